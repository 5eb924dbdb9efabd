// Package testutil finds what captiongo's tests compare against: the Python
// reference side in .venv and the real data in ../shared.
package testutil

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/launch"
)

// Root returns the repository root (the folder holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// inCI reports whether missing references must fail instead of skip.
func inCI() bool { return os.Getenv("CI") != "" }

// Python returns the .venv interpreter that `make setup` creates. Outside CI a
// test that needs it skips with a message when it is absent (run `make test`);
// in CI its absence fails the test.
func Python(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CAPTIONGO_PYTHON")
	if p == "" {
		p = filepath.Join(Root(), ".venv", "bin", "python")
	}
	if _, err := os.Stat(p); err != nil {
		if inCI() {
			t.Fatalf("the Python reference side is missing (%s): `make setup` creates it", p)
		}
		t.Skipf("the Python reference side is missing (%s): run `make test`, which creates it", p)
	}
	return p
}

// RunPython runs a Python script with the .venv interpreter and returns stdout;
// the script can import bench/refmodels.py.
func RunPython(t testing.TB, script string, args ...string) string {
	t.Helper()
	py := Python(t)
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	// bench/refmodels.py, captiongo's models in PyTorch, imports as refmodels.
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(Root(), "bench"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python reference failed: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// SharedData returns ../shared/data/<rel> beside the repository. A user's clone
// has no ../shared, so outside CI the test skips, saying so; in CI it is always
// there and its absence fails.
func SharedData(t testing.TB, rel string) string {
	t.Helper()
	return shared(t, "data", rel)
}

// SharedFixture returns ../shared/fixtures/<rel>, with SharedData's rules.
func SharedFixture(t testing.TB, rel string) string {
	t.Helper()
	return shared(t, "fixtures", rel)
}

func shared(t testing.TB, kind, rel string) string {
	t.Helper()
	p := filepath.Join(Root(), "..", "shared", kind, rel)
	if _, err := os.Stat(p); err != nil {
		if inCI() {
			t.Fatalf("%s is missing; CI always has ../shared/%s", p, kind)
		}
		t.Skipf("%s is absent (only the project's CI and dev machines have ../shared)", p)
	}
	return p
}

// TinyExperiment is the smallest experiment TOML that trains end to end: one
// epoch on 30 synthetic pictures at 75 px with 16-wide layers (seconds on a CPU).
// Tests append what they need (out_dir, a grid).
const TinyExperiment = `data = "synth"
synth_n = 30
freq_threshold = 1
image_size = 75
crop = 0
random_crop = false
embed_size = 16
hidden_size = 16
epochs = 1
batch_size = 16
eval_images = 4
sample_images = 1
max_len = 8
`

// Java makes sure java is on PATH (pycocoevalcap's tokenizer and METEOR run
// on it): outside CI a test without it skips, saying so; in CI it fails.
func Java(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		if inCI() {
			t.Fatal("java is missing: .ci/run installs it (default-jre-headless; pycocoevalcap's tokenizer is Java)")
		}
		t.Skip("java is not installed: pycocoevalcap's tokenizer and METEOR need it")
	}
}

// RunRanks starts world copies of this test binary as the ranks of one run,
// with torchrun's environment (rendezvous on 127.0.0.1:port) plus env and no
// test selected, so that the package's TestMain runs a rank; it returns each
// rank's output (stdout and stderr, trimmed) and exit error.
func RunRanks(t testing.TB, world, port int, env ...string) ([]string, []error) {
	t.Helper()
	outs := make([]strings.Builder, world)
	// The ranks end by themselves: a test watches what the others do when one fails.
	errs, _, err := launch.Run(launch.Spec{Exe: os.Args[0], Args: []string{"-test.run=^$"}, N: world, Port: port,
		Env: env, Stdout: func(r int) io.Writer { return &outs[r] }})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, world)
	for r := range out {
		out[r] = strings.TrimSpace(outs[r].String())
	}
	return out, errs
}
