package train

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// TestSweepRunsLocally builds captiongo, runs a 2-point sweep of a tiny
// experiment with -j 2, and runs it again: finished points are skipped.
func TestSweepRunsLocally(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "captiongo")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = testutil.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "tiny.toml"), []byte(`data = "synth"
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
`), 0o644)
	sweep := filepath.Join(dir, "sweep_tiny.toml")
	os.WriteFile(sweep, []byte("base = \"tiny.toml\"\nout_dir = \""+filepath.Join(dir, "runs")+"\"\n[grid]\nlr = [1e-3, 3e-4]\n"), 0o644)
	s, err := LoadSweep(sweep)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.RunLocal(exe, 2, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	root := filepath.Join(dir, "runs", "sweep_tiny")
	for _, p := range []string{"lr-0.001", "lr-0.0003"} {
		if st, _ := PointStatus(root, Point{Name: p}); st != "done" {
			b, _ := os.ReadFile(filepath.Join(root, p, "train.log"))
			t.Fatalf("point %s is %s:\n%s", p, st, b)
		}
		files, _ := filepath.Glob(filepath.Join(root, p, "events.out.tfevents.*"))
		if len(files) != 1 {
			t.Fatalf("point %s: event files %v", p, files)
		}
		if _, err := tensorboard.ReadEvents(files[0]); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(out.String(), "lr-0.001                                 done") {
		t.Errorf("table:\n%s", out.String())
	}
	out.Reset()
	if err := s.RunLocal(exe, 2, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "already finished, skipped") != 2 {
		t.Errorf("second run did not skip the finished points:\n%s", out.String())
	}
}
