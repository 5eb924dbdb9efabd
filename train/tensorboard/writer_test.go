package tensorboard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

func TestCRC32CCheckValue(t *testing.T) {
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xE3069283 {
		t.Errorf("crc32c(123456789) = %#x, want 0xE3069283", got)
	}
}

// TestRecordBytes checks the framing byte for byte on an empty and a short payload.
func TestRecordBytes(t *testing.T) {
	r := Record([]byte("abc"))
	if len(r) != 8+4+3+4 {
		t.Fatalf("record of 3 bytes has %d bytes", len(r))
	}
	if binary.LittleEndian.Uint64(r) != 3 || !bytes.Equal(r[12:15], []byte("abc")) {
		t.Errorf("length or payload wrong: % x", r)
	}
	if binary.LittleEndian.Uint32(r[8:]) != MaskedCRC(r[:8]) ||
		binary.LittleEndian.Uint32(r[15:]) != MaskedCRC([]byte("abc")) {
		t.Errorf("CRCs wrong: % x", r)
	}
	// masked CRC of the empty string: mask(0) = 0xa282ead8.
	if MaskedCRC(nil) != 0xa282ead8 {
		t.Errorf("MaskedCRC(empty) = %#x", MaskedCRC(nil))
	}
}

// TestReadPyTorchFixture reads the log PyTorch's own SummaryWriter wrote.
func TestReadPyTorchFixture(t *testing.T) {
	dir := testutil.SharedFixture(t, "tensorboard-pytorch")
	main, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if len(main) != 1 {
		t.Fatalf("fixture files: %v", main)
	}
	evs, err := ReadEvents(main[0])
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].FileVersion != "brain.Event:2" {
		t.Errorf("first event %+v", evs[0])
	}
	scalars := map[int64]float32{}
	tags := map[string]bool{}
	for _, e := range evs {
		for _, v := range e.Values {
			tags[v.Tag] = true
			if v.Tag == "Training loss" && v.Simple != nil {
				scalars[e.Step] = *v.Simple
			}
			if v.Tag == "samples/image0" &&
				(v.ImageW != 8 || v.ImageH != 8 || !bytes.HasPrefix(v.ImagePNG, []byte("\x89PNG"))) {
				t.Errorf("image %dx%d", v.ImageW, v.ImageH)
			}
			if v.Tag == "samples/epoch/text_summary" && (v.Plugin != "text" || len(v.Text) != 1) {
				t.Errorf("text value %+v", v)
			}
		}
	}
	for s := int64(0); s < 5; s++ {
		if want := float32(4) / float32(s+1); scalars[s] != want {
			t.Errorf("Training loss at step %d = %v, want %v", s, scalars[s], want)
		}
	}
	for _, tag := range []string{"Training loss", "samples/epoch/text_summary", "samples/image0"} {
		if !tags[tag] {
			t.Errorf("tag %q missing", tag)
		}
	}
	sub, _ := filepath.Glob(filepath.Join(dir, "*", "events.out.tfevents.*"))
	if len(sub) != 1 {
		t.Fatalf("hparams sub-run: %v", sub)
	}
	evs, err = ReadEvents(sub[0])
	if err != nil {
		t.Fatal(err)
	}
	var plugins []string
	for _, e := range evs {
		for _, v := range e.Values {
			plugins = append(plugins, v.Tag+":"+v.Plugin)
		}
	}
	got := strings.Join(plugins, " ")
	for _, want := range []string{"_hparams_/experiment:hparams", "_hparams_/session_start_info:hparams",
		"_hparams_/session_end_info:hparams", "hparam/bleu4:"} {
		if !strings.Contains(got, want) {
			t.Errorf("hparams sub-run lacks %s: %s", want, got)
		}
	}
}

// TestWriterWithRealTensorBoard writes every kind of summary and reads the
// file back with our reader and with TensorBoard's own EventAccumulator and
// HParams plugin metadata parser.
func TestWriterWithRealTensorBoard(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	w.HParamsStart(map[string]any{"lr": 3e-4, "embed_size": 256, "train_cnn": false, "decoder": "lstm"}, "")
	for s := int64(0); s < 5; s++ {
		w.Scalar("Training loss", s, 4/float64(s+1))
	}
	w.Text("samples", 4, "| image | generated |\n|---|---|\n| a.png | a dog |")
	png := tinyPNG(t)
	w.Image("samples/image0", 4, png, 2, 2)
	w.Histogram("weights/fc", 4, []float64{1, 2, 2, 3, 10})
	w.HParamsEnd(true)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	if evs[1].SessionLog != 1 || evs[1].Step != 3 {
		t.Errorf("purge record %+v", evs[1])
	}
	out := testutil.RunPython(t, `
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
ea = EventAccumulator(sys.argv[1], size_guidance={"tensors": 0, "scalars": 0, "images": 0})
ea.Reload()
tags = ea.Tags()
print("scalars", sorted(tags["scalars"]))
print("steps", [e.step for e in ea.Scalars("Training loss")])
print("values", [round(e.value, 4) for e in ea.Scalars("Training loss")])
print("images", tags["images"], ea.Images("samples/image0")[0].width)
print("histograms", tags["histograms"])
print("tensors", sorted(tags["tensors"]))
print("text", ea.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()[:7])
for tag in ["_hparams_/session_start_info", "_hparams_/session_end_info"]:
    c = ea.SummaryMetadata(tag).plugin_data.content
    start, end = metadata.parse_session_start_info_plugin_data, metadata.parse_session_end_info_plugin_data
    parse = start if "start" in tag else end
    d = parse(c)
    print(tag, str(d).replace("\n", " "))
`, dir)
	for _, want := range []string{
		"scalars ['Training loss']",
		"steps [0, 1, 2, 3, 4]",
		"values [4.0, 2.0, 1.3333, 1.0, 0.8]",
		"images ['samples/image0'] 2",
		"histograms ['weights/fc']",
		"'samples/text_summary'",
		"text | image",
		`key: "embed_size"`, `number_value: 256`, `key: "train_cnn"`, `bool_value: false`, `string_value: "lstm"`,
		"status: STATUS_SUCCESS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("TensorBoard's view lacks %q:\n%s", want, out)
		}
	}
}

// TestPurgeDropsOrphanedSteps: a run killed after step 10 and resumed from a
// checkpoint at step 5 (a new writer with purge step 6, started in the same
// second) shows stock TensorBoard steps 1-5 of the first file and 6-12 of the
// second, each once. Both files start with a purge record, as the trainer's
// do (step+1 of where it starts): the server's accumulator takes the first
// START it reads for the session's beginning and purges only on later ones.
func TestPurgeDropsOrphanedSteps(t *testing.T) {
	dir := t.TempDir()
	for i, steps := range [][2]int64{{1, 10}, {6, 12}} {
		purge := int64(1)
		if i == 1 {
			purge = 6
		}
		w, err := NewWriter(dir, purge)
		if err != nil {
			t.Fatal(err)
		}
		for s := steps[0]; s <= steps[1]; s++ {
			w.Scalar("x", s, float64(s*int64(i*9+1)))
			w.Text("note", s, fmt.Sprintf("file %d step %d", i, s))
		}
		w.Close()
	}
	// The legacy EventAccumulator purges scalars but not tensors (text); the
	// server's data ingester (plugin_event_accumulator) purges every kind, and
	// is what `tensorboard --logdir` shows.
	out := testutil.RunPython(t, `
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
print([(e.step, int(e.value)) for e in ea.Scalars("x")])
ea = pea.EventAccumulator(sys.argv[1], size_guidance={"tensors": 0})
ea.Reload()
print([(e.step, int(tensor_util.make_ndarray(e.tensor_proto))) for e in ea.Tensors("x")])
print([tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in ea.Tensors("note/text_summary")])
`, dir)
	var pairs []string
	for s := 1; s <= 12; s++ {
		pairs = append(pairs, fmt.Sprintf("(%d, %d)", s, s*map[bool]int{true: 1, false: 10}[s <= 5]))
	}
	scalars := "[" + strings.Join(pairs, ", ") + "]"
	var texts []string
	for s := 1; s <= 12; s++ {
		texts = append(texts, fmt.Sprintf("'file %d step %d'", map[bool]int{true: 0, false: 1}[s <= 5], s))
	}
	want := scalars + "\n" + scalars + "\n[" + strings.Join(texts, ", ") + "]"
	if strings.TrimSpace(out) != want {
		t.Errorf("TensorBoard reads\n%s\nwant\n%s", out, want)
	}
}

// TestCutFileStaysReadable: a writer killed mid-record leaves a file whose
// complete records still read.
func TestCutFileStaysReadable(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewWriter(dir, -1)
	for s := int64(0); s < 10; s++ {
		w.Scalar("loss", s, float64(s))
	}
	w.Close()
	b, _ := os.ReadFile(w.Path)
	os.WriteFile(w.Path, b[:len(b)-7], 0o644)
	evs, err := ReadEvents(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1+9 {
		t.Errorf("%d events from a cut file, want 10 (version + 9 whole scalars)", len(evs))
	}
}
