package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// TestLoaderCaseRuns runs the loader case on a few real JPEGs with both sides
// and checks the line's keys and that both throughputs are measured.
func TestLoaderCaseRuns(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-mini")
	var out bytes.Buffer
	if err := Run(Options{Case: "loader", Data: dir, Python: testutil.Python(t), Images: 64, Workers: 2},
		&out); err != nil {
		t.Fatal(err)
	}
	checkLines(t, out.Bytes(), []string{"loader", "loader_go_jpeg"})
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var r map[string]any
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if _, ok := r["alloc"]; !ok {
			t.Errorf("key alloc missing from %s", l)
		}
	}
	if err := Run(Options{Case: "nope", Python: "x"}, &out); err == nil {
		t.Error("unknown case accepted")
	}
}

// TestDecodeCaseRuns runs the decoding case: both sides decode the same
// weights (the case fails if their first tokens differ) and both are timed.
func TestDecodeCaseRuns(t *testing.T) {
	var out bytes.Buffer
	if err := Run(Options{Case: "decode", Python: testutil.Python(t)}, &out); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), out.String())
	}
	for _, l := range lines {
		var r Result
		if err := json.Unmarshal(l, &r); err != nil || r.Captiongo <= 0 || r.PyTorch <= 0 {
			t.Errorf("line %s: %v", l, err)
		}
	}
}

// TestTrainCaseRuns runs the training-step case with one repetition: the
// eval-mode losses of both sides must agree (same model) and every line
// has both timings.
func TestTrainCaseRuns(t *testing.T) {
	var out bytes.Buffer
	if err := Run(Options{Case: "train", Python: testutil.Python(t), Quick: true}, &out); err != nil {
		t.Fatal(err)
	}
	checkLines(
		t,
		out.Bytes(),
		[]string{
			"train_step_frozen_b32_299",
			"encoder_features_b32_299",
			"decoder_step_b32",
			"decoder_step_b256",
			"train_step_finetune_b8_299",
			"adam_update_finetune",
		},
	)
}

// TestEpochCaseRuns runs the epoch case on a small synthetic set and on as
// many real Flickr8k JPEGs.
func TestEpochCaseRuns(t *testing.T) {
	var out bytes.Buffer
	if err := Run(Options{Case: "epoch", Python: testutil.Python(t), SynthN: 20, Workers: 2, Data: testutil.SharedData(t,
		"flickr8k-mini")}, &out); err != nil {
		t.Fatal(err)
	}
	checkLines(
		t,
		out.Bytes(),
		[]string{"epoch_synth_no_cache", "epoch_synth_cache", "epoch_jpeg_no_cache", "epoch_jpeg_cache"},
	)
}

func checkLines(t *testing.T, out []byte, cases []string) {
	t.Helper()
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != len(cases) {
		t.Fatalf("%d lines, want %d: %s", len(lines), len(cases), out)
	}
	for i, l := range lines {
		var r Result
		if err := json.Unmarshal(l, &r); err != nil || r.Case != cases[i] || r.Captiongo <= 0 || r.PyTorch <= 0 ||
			r.Speedup <= 0 {
			t.Errorf("line %s: %v (want case %s with both sides measured)", l, err, cases[i])
		}
	}
}

// TestBenchDeviceChoice: an unknown -device is refused before anything runs,
// and -device cuda on a build or machine without CUDA says why instead of
// timing the CPU under a CUDA label.
func TestBenchDeviceChoice(t *testing.T) {
	err := Run(Options{Case: "decode", Python: "python3", Device: "tpu"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `-device "tpu": use cpu or cuda`) {
		t.Errorf("-device tpu: %v", err)
	}
	var cuda bool
	torch.Run(func() error { cuda = torch.Inspect().CUDAAvailable; return nil })
	if cuda {
		return // the CUDA path itself runs through scripts/device_bench.sh on a GPU machine
	}
	err = Run(Options{Case: "decode", Python: testutil.Python(t), Device: "cuda"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "CUDA is not available") {
		t.Errorf("-device cuda without CUDA: %v", err)
	}
}

// TestRefAlloc: -ref-alloc jemalloc preloads the library CAPTIONGO_JEMALLOC
// names (with MALLOC_CONF that keeps freed pages unless one is set), says so
// when there is none, and refuses a value it does not know.
func TestRefAlloc(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libjemalloc.so.2")
	os.WriteFile(lib, nil, 0o644)
	t.Setenv("CAPTIONGO_JEMALLOC", lib)
	t.Setenv("MALLOC_CONF", "")
	p, err := refPreload("jemalloc")
	if err != nil || p != lib {
		t.Fatalf("refPreload(jemalloc) = %q, %v; want %s", p, err, lib)
	}
	env := strings.Join(refCommand(Options{Python: "python3", refPreload: p}).Env, "\n")
	for _, want := range []string{"LD_PRELOAD=" + lib, "MALLOC_CONF=" + jemallocConf} {
		if !strings.Contains(env, want) {
			t.Errorf("reference environment lacks %s", want)
		}
	}
	if cmd := refCommand(Options{Python: "python3"}); cmd.Env != nil {
		t.Error("default allocator: the reference environment was changed")
	}
	t.Setenv("CAPTIONGO_JEMALLOC", filepath.Join(t.TempDir(), "none.so"))
	if _, err := refPreload("jemalloc"); err == nil || !strings.Contains(err.Error(), "none.so") {
		t.Errorf("missing library: %v", err)
	}
	if err := Run(Options{Case: "loader", Python: "x", RefAlloc: "tcmalloc"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "tcmalloc") {
		t.Errorf("-ref-alloc tcmalloc: %v", err)
	}
}
