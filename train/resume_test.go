package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/captiongo/captiongo/internal/testutil"
)

// exactRun is the experiment the resume tests train: the tiny one (dropout
// on, the feature cache) for three epochs with a checkpoint every 4 steps.
func exactRun(t *testing.T, out string) Config {
	cfg := tiny(t, out)
	cfg.Epochs, cfg.CheckpointEvery, cfg.Resume = 3, 4, true
	return cfg
}

// TestTrainChild is the child process of the resume tests: it trains
// exactRun in CAPTIONGO_TRAIN_CHILD and SIGKILLs itself at the n-th
// CAPTIONGO_CRASH=point:n (a Crash point, or "step" for after step n), or
// honours SIGTERM when CAPTIONGO_SIGTERM is set, exiting with its code.
func TestTrainChild(t *testing.T) {
	out := os.Getenv("CAPTIONGO_TRAIN_CHILD")
	if out == "" {
		t.Skip("only runs as the child process of the resume tests")
	}
	opt := Options{Out: os.Stdout}
	if spec := os.Getenv("CAPTIONGO_CRASH"); spec != "" {
		i := strings.LastIndex(spec, ":")
		point := spec[:i]
		n, err := strconv.Atoi(spec[i+1:])
		if err != nil {
			t.Fatal(err)
		}
		kill := func() { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
		seen := 0
		opt.Crash = func(p string) {
			if p == point {
				if seen++; seen == n {
					kill()
				}
			}
		}
		if point == "step" {
			opt.OnStep = func(s int64) {
				if s == int64(n) {
					kill()
				}
			}
		}
	}
	if os.Getenv("CAPTIONGO_SIGTERM") != "" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		opt.Interrupt = sig
		opt.OnStep = func(int64) { time.Sleep(40 * time.Millisecond) } // time for the parent to signal
	}
	_, err := runIt(t, exactRun(t, out), opt)
	var in *Interrupted
	if errors.As(err, &in) {
		fmt.Println(err)
		os.Exit(in.ExitCode())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// child starts TestTrainChild on out with extra environment; the caller waits.
func child(t *testing.T, out string, env ...string) (*exec.Cmd, *os.File) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrainChild$", "-test.v")
	cmd.Env = append(append(os.Environ(), "CAPTIONGO_TRAIN_CHILD="+out), env...)
	logf, err := os.CreateTemp(out, "child-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, logf
}

// scalarStream is every scalar tag's (step, value) series and the steps of
// the samples text, as `tensorboard --logdir` reads the run folder: its data
// ingester's plugin_event_accumulator (several event files, purge records
// applied to every kind; the legacy EventAccumulator leaves text and other
// tensors unpurged); wall-clock tags left out.
func scalarStream(t *testing.T, dir string) map[string][][2]float64 {
	t.Helper()
	out := testutil.RunPython(t, `
import sys, json
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
ea = EventAccumulator(sys.argv[1], size_guidance={"tensors": 0})
ea.Reload()
out = {}
for tag in ea.Tags()["tensors"]:
    evs = ea.Tensors(tag)
    if ea.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
        out[tag] = [[e.step, float(tensor_util.make_ndarray(e.tensor_proto))] for e in evs]
out["samples (text steps)"] = [[e.step, 0] for e in ea.Tensors("samples/text_summary")]
print(json.dumps(out))
`, dir)
	var m map[string][][2]float64
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	delete(m, "images per second")
	return m
}

// sameRun compares a resumed run with the uninterrupted one: bit-identical
// weights and best weights, the same per-epoch scores and best epoch, and the
// same event stream as TensorBoard reads it (no step missing or twice).
func sameRun(t *testing.T, ref, got *Result) {
	t.Helper()
	if got.State.Step != ref.State.Step || !got.State.Finished {
		t.Errorf("resumed run: %d steps (finished %v), uninterrupted %d", got.State.Step, got.State.Finished,
			ref.State.Step)
	}
	for _, f := range [][2]string{{ref.State.Weights, got.State.Weights}, {"best.gt", "best.gt"}} {
		a, b := weights(t, filepath.Join(ref.RunDir, f[0])), weights(t, filepath.Join(got.RunDir, f[1]))
		if d := maxAbsDiff(a, b); d != 0 || len(a) != len(b) {
			t.Errorf("%s: weights differ from the uninterrupted run's by %.3g (want bit-identical)", f[1], d)
		}
	}
	if len(got.State.History) != len(ref.State.History) {
		t.Fatalf("history: %d epochs, want %d", len(got.State.History), len(ref.State.History))
	}
	for i, h := range ref.State.History {
		g := got.State.History[i]
		if g.TrainLoss != h.TrainLoss || g.ValLoss != h.ValLoss || g.Bleu4 != h.Bleu4 || g.CIDEr != h.CIDEr ||
			g.Step != h.Step {
			t.Errorf("epoch %d: resumed %+v, uninterrupted %+v", i+1, g, h)
		}
	}
	if got.State.BestEpoch != ref.State.BestEpoch || got.State.Best != ref.State.Best {
		t.Errorf("best: epoch %d (%v), uninterrupted epoch %d (%v)", got.State.BestEpoch, got.State.Best,
			ref.State.BestEpoch, ref.State.Best)
	}
	a, b := scalarStream(t, ref.RunDir), scalarStream(t, got.RunDir)
	if len(a) < 6 {
		t.Fatalf("uninterrupted run's scalars: %v", a)
	}
	for tag, want := range a {
		if g := b[tag]; fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("TensorBoard %q: resumed %v\nuninterrupted %v", tag, g, want)
		}
	}
	for tag := range b {
		if _, ok := a[tag]; !ok {
			t.Errorf("TensorBoard %q only in the resumed run", tag)
		}
	}
}

// TestResumeExactAfterKills kills a run with SIGKILL again and again, each
// time at another point: while the feature cache is built, inside a checkpoint
// (weights written, folder renamed, state committed), halfway through an
// event record, during evaluation, and after a random step; each child
// resumes where the last one died. The run that finally completes must equal
// an uninterrupted one with the same seed bit for bit (sameRun).
func TestResumeExactAfterKills(t *testing.T) {
	ref, err := runIt(t, exactRun(t, t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("CAPTIONGO_KILL_SEED"); s != "" { // replays a logged run
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("random kill points from seed %d", seed)
	out := t.TempDir()
	state := func() State {
		var st State
		b, _ := os.ReadFile(filepath.Join(out, "tiny", "state.json"))
		json.Unmarshal(b, &st)
		return st
	}
	// Each child dies at the first occurrence of its point after resuming, so
	// the run moves on between kills and is never finished before the last.
	points := []func(st State) string{
		func(State) string { return "cache:1" },
		func(State) string { return "checkpoint:weights:1" },
		func(State) string { return fmt.Sprintf("event:%d", 20+rng.IntN(20)) },
		func(State) string { return "checkpoint:folder:1" },
		func(State) string { return "eval:1" },
		func(State) string { return "checkpoint:state:1" },
		func(st State) string { return fmt.Sprintf("step:%d", st.Step+1+int64(rng.IntN(4))) },
	}
	for _, point := range points {
		p := point(state())
		cmd, logf := child(t, out, "CAPTIONGO_CRASH="+p)
		err := cmd.Wait()
		b, _ := os.ReadFile(logf.Name())
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill at %s: the child ended with %v, not by SIGKILL (point never reached?):\n%s", p, err, b)
		}
		st := state()
		t.Logf("killed at %s; the last checkpoint is step %d (epoch %d, batch %d)", p, st.Step, st.Epoch+1, st.Batch)
	}
	var log strings.Builder
	got, err := runIt(t, exactRun(t, out), Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	sameRun(t, ref, got)
}

// TestSIGTERMCheckpointsAndExits sends SIGTERM (what Slurm sends at a time
// limit) to a training child: it checkpoints the step it is at, says how to
// resume, and exits with 143; resuming ends bit-identical to an
// uninterrupted run.
func TestSIGTERMCheckpointsAndExits(t *testing.T) {
	ref, err := runIt(t, exactRun(t, t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd, logf := child(t, out, "CAPTIONGO_SIGTERM=1")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var st State
		b, err := os.ReadFile(filepath.Join(out, "tiny", "state.json"))
		if err == nil && json.Unmarshal(b, &st) == nil && st.Step >= 6 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("child never checkpointed:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("the child did not exit within a minute of SIGTERM")
	}
	b, _ := os.ReadFile(logf.Name())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("child after SIGTERM: %v, want exit code 143:\n%s", err, b)
	}
	var st State
	sb, _ := os.ReadFile(filepath.Join(out, "tiny", "state.json"))
	if err := json.Unmarshal(sb, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("terminated: checkpointed %s at step %d; run the same command with -set resume=true",
		filepath.Join(out, "tiny"), st.Step)
	if !strings.Contains(string(b), want) || !strings.Contains(string(b), "checkpointing at epoch") {
		t.Errorf("child's log lacks %q:\n%s", want, b)
	}
	if st.Step%4 == 0 {
		t.Logf("SIGTERM landed on a checkpoint step (%d)", st.Step)
	}
	got, err := runIt(t, exactRun(t, out), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameRun(t, ref, got)
}

// TestCorruptCheckpoint truncates the newest checkpoint's weights: resuming
// says so and falls back to the checkpoint before it (and still ends
// bit-identical to an uninterrupted run); with both unreadable, the error
// names the file.
func TestCorruptCheckpoint(t *testing.T) {
	ref, err := runIt(t, exactRun(t, t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := func() (string, State) {
		out := t.TempDir()
		if _, err := runIt(t, exactRun(t, out), Options{StopAt: 30}); !errors.Is(err, errStopped) {
			t.Fatalf("stop: %v", err)
		}
		var st State
		b, _ := os.ReadFile(filepath.Join(out, "tiny", "state.json"))
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return out, st
	}
	truncate := func(p string) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	out, st := stopped()
	truncate(filepath.Join(out, "tiny", st.Weights))
	var log strings.Builder
	got, err := runIt(t, exactRun(t, out), Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "note: checkpoint "+filepath.Dir(st.Weights)+" cannot be read") ||
		!strings.Contains(log.String(), "resuming from the previous one, ckpt-") {
		t.Errorf("no fallback note:\n%s", log.String())
	}
	sameRun(t, ref, got)

	out, st = stopped()
	dirs, _ := filepath.Glob(filepath.Join(out, "tiny", "ckpt-*"))
	if len(dirs) != 2 {
		t.Fatalf("checkpoint folders kept: %v, want the newest two", dirs)
	}
	for _, d := range dirs {
		truncate(filepath.Join(d, "model.gt"))
	}
	_, err = runIt(t, exactRun(t, out), Options{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(out, "tiny", st.Weights)) ||
		!strings.Contains(err.Error(), "no earlier checkpoint folder can be read") {
		t.Errorf("both checkpoints unreadable: %v", err)
	}
}
