package train

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// tiny is a seconds-long experiment on a small synthetic set.
func tiny(t *testing.T, out string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.OutDir = "tiny", out
	cfg.SynthN, cfg.FreqThreshold = 60, 1
	cfg.ImageSize, cfg.Crop, cfg.RandomCrop = 75, 0, false
	cfg.EmbedSize, cfg.HiddenSize, cfg.Dropout = 32, 32, 0.1
	cfg.Epochs, cfg.BatchSize, cfg.LR = 2, 16, 2e-3
	cfg.EvalImages, cfg.SampleImages, cfg.MaxLen = 6, 2, 12
	cfg.LogEvery = 5
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runIt(t *testing.T, cfg Config, opt Options) (*Result, error) {
	t.Helper()
	var res *Result
	err := torch.Run(func() error {
		var err error
		res, err = Run(cfg, opt)
		return err
	})
	if pe, ok := err.(*torch.PanicError); ok {
		t.Fatalf("%v\n%s", pe, pe.Stack)
	}
	return res, err
}

// TestTrainRunInTensorBoard trains the tiny experiment and opens the run with
// the real tensorboard package: scalar, text, image and hparams tags at the
// right steps.
func TestTrainRunInTensorBoard(t *testing.T) {
	out := t.TempDir()
	cfg := tiny(t, out)
	cfg.Histograms = true
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	steps := res.State.Step
	if !res.State.Finished || len(res.State.History) != 2 || steps != 2*int64((48*5+15)/16) {
		t.Fatalf("state %+v", res.State)
	}
	for _, f := range []string{"config.toml", "vocab.json", "state.json", "best.gt", "best.json", res.State.Weights,
		res.State.Moments} {
		if _, err := os.Stat(filepath.Join(res.RunDir, f)); err != nil {
			t.Errorf("run folder lacks %s", f)
		}
	}
	if !strings.Contains(log.String(), "--- resolved config ---") || !strings.Contains(log.String(), "epoch 2/2:") {
		t.Errorf("log:\n%s", log.String())
	}
	got := testutil.RunPython(t, `
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
ea = EventAccumulator(sys.argv[1], size_guidance={"tensors": 0, "scalars": 0, "images": 0, "histograms": 0})
ea.Reload()
tags = ea.Tags()
print("scalars", sorted(tags["scalars"]))
loss = ea.Scalars("Training loss")
print("loss steps", loss[0].step, loss[-1].step, len(loss))
print("val steps", [e.step for e in ea.Scalars("Validation loss")])
print("images", sorted(tags["images"]))
print("tensors", sorted(tags["tensors"]))
print("text", ea.Tensors("samples/text_summary")[-1].tensor_proto.string_val[0].decode().splitlines()[0])
ssi = metadata.parse_session_start_info_plugin_data(
    ea.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
print("hparams", sorted(ssi.hparams.keys()))
sei = metadata.parse_session_end_info_plugin_data(ea.SummaryMetadata("_hparams_/session_end_info").plugin_data.content)
print("end", sei.status)
h = ea.Histograms("weights/decoderRNN.linear.weight")
print("hist weights", [e.step for e in h], h[-1].histogram_value.num)
g = ea.Histograms("gradients/decoderRNN.linear.weight")
print("hist grads", [e.step for e in g], g[-1].histogram_value.max > g[-1].histogram_value.min)
print("hist count", len(tags["histograms"]))
`, res.RunDir)
	per := steps / 2
	for _, want := range []string{
		"'BLEU-4'", "'CIDEr-D'", "'Training loss'", "'Validation loss'", "'learning rate'",
		"loss steps 1 " + strconv.FormatInt(steps, 10) + " " + strconv.FormatInt(steps, 10),
		"val steps [" + strconv.FormatInt(per, 10) + ", " + strconv.FormatInt(steps, 10) + "]",
		"images ['samples/image0', 'samples/image1']",
		"'samples/text_summary'",
		"text | image | generated | reference |",
		"'batch_size', 'crop', 'decoder'", "'lr'",
		"end 1",
		"hist weights [" + strconv.FormatInt(per, 10) + ", " + strconv.FormatInt(steps, 10) + "]",
		"hist grads [" + strconv.FormatInt(per, 10) + ", " + strconv.FormatInt(steps, 10) + "] True",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TensorBoard's view lacks %q:\n%s", want, got)
		}
	}
	// The real UI's server: its scalar and hparams endpoints list the run.
	checkTensorBoardServer(t, out, "tiny")
	// Running it again without resume refuses to overwrite the run.
	if _, err := runIt(t, cfg, Options{}); err == nil || !strings.Contains(err.Error(), "already holds a checkpoint") {
		t.Errorf("second run without resume: %v", err)
	}
	// Resuming a finished run does nothing; resuming onto another architecture is refused.
	cfg.Resume = true
	cfg.HiddenSize = 48
	if _, err := runIt(t, cfg, Options{}); err == nil ||
		!strings.Contains(err.Error(), "different architecture: hidden_size (32 -> 48)") {
		t.Errorf("resume onto another architecture: %v", err)
	}
}

// TestResumeAfterStop stops a run mid-epoch (after a mid-epoch checkpoint),
// resumes it, and checks it ends with the same steps and bit for bit the same
// weights as an uninterrupted run (the optimiser moments are in the
// checkpoint; dropout's masks follow the seed and the step).
func TestResumeAfterStop(t *testing.T) {
	ref := tiny(t, t.TempDir()) // dropout on: its masks follow the run's seed and the step
	rres, err := runIt(t, ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ref
	cfg.OutDir = t.TempDir()
	cfg.CheckpointEvery = 4
	_, err = runIt(t, cfg, Options{StopAt: 10})
	if !errors.Is(err, errStopped) {
		t.Fatalf("stop: %v", err)
	}
	cfg.Resume = true
	res, err := runIt(t, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.State.Step != rres.State.Step {
		t.Errorf("resumed run made %d steps, uninterrupted %d", res.State.Step, rres.State.Step)
	}
	a := weights(t, filepath.Join(rres.RunDir, rres.State.Weights))
	b := weights(t, filepath.Join(res.RunDir, res.State.Weights))
	if d := maxAbsDiff(a, b); d != 0 {
		t.Errorf("weights after resume differ from the uninterrupted run by %.3g (want bit-identical)", d)
	}
	checkEvents(t, res.RunDir)
}

func weights(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	err := torch.Run(func() error {
		m, err := model.LoadTensors(path)
		if err != nil {
			return err
		}
		for k, v := range m {
			out[k] = torch.Float32s(v)
		}
		model.DropAll(m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxAbsDiff(a, b map[string][]float32) float64 {
	m := 0.0
	for k, x := range a {
		y := b[k]
		if len(y) != len(x) {
			return 1e9
		}
		for i := range x {
			d := float64(x[i] - y[i])
			if d < 0 {
				d = -d
			}
			if d > m {
				m = d
			}
		}
	}
	return m
}

// checkEvents reads every event file of a run with CRC checks.
func checkEvents(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if len(files) == 0 {
		t.Fatal("no event files")
	}
	for _, f := range files {
		if _, err := tensorboard.ReadEvents(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestTrainOnFlickrMini trains a few steps on real JPEGs of mixed shapes with
// real captions and checks the run folder.
func TestTrainOnFlickrMini(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-mini")
	cfg := tiny(t, t.TempDir())
	cfg.Data, cfg.FreqThreshold, cfg.Epochs = dir, 5, 1
	cfg.FeatureCache = false // decode the JPEGs every step, as a real run does
	cfg.RandomCrop, cfg.ImageSize, cfg.Crop = true, 90, 75
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log, StopAt: 0, OnStep: nil})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "800 train / 100 val images") {
		t.Errorf("split: %s", log.String())
	}
	checkEvents(t, res.RunDir)
	if res.State.Step == 0 || len(res.Samples) == 0 {
		t.Errorf("state %+v", res.State)
	}
}

// TestMemoryFlat trains 300 steps: live tensors must not grow (counted with
// the garbage collector off, so that a tensor that is not dropped cannot be
// rescued by a finalizer) and resident memory must stay flat (measured with the
// collector on, as in a real run).
func TestMemoryFlat(t *testing.T) {
	cfg := tiny(t, t.TempDir())
	cfg.Epochs, cfg.EvalImages, cfg.SampleImages = 20, 4, 1
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	var live [2]int
	var rss [2]int64
	_, err := runIt(t, cfg, Options{OnStep: func(s int64) {
		switch s {
		case 45:
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
			runtime.GC()
			debug.SetGCPercent(-1)
			live[0] = torch.LiveTensors()
		case 170:
			live[1] = torch.LiveTensors()
			debug.SetGCPercent(100)
			runtime.GC()
			debug.FreeOSMemory()
			rss[0] = rssKB()
		case 300:
			runtime.GC()
			debug.FreeOSMemory()
			rss[1] = rssKB()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf(
		"live tensors at steps 45 and 170: %d, %d; resident memory at steps 170 and 300: %d MB, %d MB",
		live[0],
		live[1],
		rss[0]/1024,
		rss[1]/1024,
	)
	if live[1] > live[0] {
		t.Errorf("live tensors grew from %d to %d over 125 steps (8 epochs with evaluation)", live[0], live[1])
	}
	if rss[1]-rss[0] > 32*1024 {
		t.Errorf("resident memory grew by %d MB over 130 steps", (rss[1]-rss[0])/1024)
	}
	_ = gotch.CPU
}

func rssKB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// TestMemoryFlatFineTuning trains with the whole backbone trainable (no
// feature cache): resident memory must stay flat. (gotch's in-place ops leak
// the handle they replace; the old Adam built on them grew by about the size
// of the backbone every step.)
func TestMemoryFlatFineTuning(t *testing.T) {
	cfg := tiny(t, t.TempDir())
	cfg.TrainCNN, cfg.FeatureCache, cfg.Epochs, cfg.BatchSize = true, false, 2, 8
	var rss [2]int64
	_, err := runIt(t, cfg, Options{OnStep: func(s int64) {
		switch s {
		case 10:
			runtime.GC()
			rss[0] = rssKB()
		case 50:
			runtime.GC()
			rss[1] = rssKB()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fine-tuning: resident memory at steps 10 and 50: %d MB, %d MB", rss[0]/1024, rss[1]/1024)
	if rss[1]-rss[0] > 100*1024 {
		t.Errorf("resident memory grew by %d MB over 40 fine-tuning steps", (rss[1]-rss[0])/1024)
	}
}

// checkTensorBoardServer starts `tensorboard --logdir logdir` from .venv on a
// free port and fetches the scalars plugin's tags and the HParams plugin's
// experiment and session groups, as the browser UI does.
func checkTensorBoardServer(t *testing.T, logdir, run string) {
	t.Helper()
	tb := filepath.Join(filepath.Dir(testutil.Python(t)), "tensorboard")
	port, err := dist.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(
		tb,
		"--logdir",
		logdir,
		"--host",
		"127.0.0.1",
		"--port",
		strconv.Itoa(port),
		"--reload_interval",
		"1",
	)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	get := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if method == "POST" {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-XSRF-Protected", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var tags string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, body := get("GET", "/data/plugin/scalars/tags", "")
		if code == 200 && strings.Contains(body, "Training loss") {
			tags = body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tensorboard did not serve the run's scalars in 90 s (last: %d %s)\n%s", code, body, logs.String())
		}
	}
	var scalars map[string]map[string]any
	if err := json.Unmarshal([]byte(tags), &scalars); err != nil {
		t.Fatalf("scalars/tags: %v\n%s", err, tags)
	}
	for _, tag := range []string{"Training loss", "Validation loss", "BLEU-4", "CIDEr-D", "learning rate"} {
		if _, ok := scalars[run][tag]; !ok {
			t.Errorf("scalars/tags lacks %s/%s: %s", run, tag, tags)
		}
	}
	code, exp := get("POST", "/data/plugin/hparams/experiment", `{"experimentName": ""}`)
	if code != 200 || !strings.Contains(exp, `"lr"`) || !strings.Contains(exp, `"hidden_size"`) {
		t.Errorf("hparams/experiment: %d %s\n%s", code, exp, logs.String())
	}
	code, groups := get(
		"POST",
		"/data/plugin/hparams/session_groups",
		`{"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", `+
			`"STATUS_UNKNOWN"], "colParams": [], "startIndex": 0, "sliceSize": 10}`,
	)
	if code != 200 || !strings.Contains(groups, `"name": "`+run+`"`) && !strings.Contains(groups, `"name":"`+run+`"`) ||
		!strings.Contains(groups, "STATUS_SUCCESS") {
		t.Errorf("hparams/session_groups: %d %s", code, groups)
	}
}

// loggedScalars is every value the run folder's event files hold for a
// scalar tag, in file and record order.
func loggedScalars(t *testing.T, dir, tag string) []float64 {
	t.Helper()
	var out []float64
	files, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	for _, f := range files {
		evs, err := tensorboard.ReadEvents(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			for _, v := range ev.Values {
				if v.Tag == tag && v.Simple != nil {
					out = append(out, float64(*v.Simple))
				}
			}
		}
	}
	return out
}
