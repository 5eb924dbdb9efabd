package sweep

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// TestSweepRunsLocally builds captiongo, runs a 2-point sweep of a tiny
// experiment with -j 2, and runs it again: finished points are skipped.
func TestSweepRunsLocally(t *testing.T) {
	dir := t.TempDir()
	exe := buildCaptiongo(t, dir)
	s := writeSweep(t, dir, "lr = [1e-3, 3e-4]", "")
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

// buildCaptiongo builds the captiongo binary into dir.
func buildCaptiongo(t *testing.T, dir string) string {
	t.Helper()
	exe := filepath.Join(dir, "captiongo")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = testutil.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// TestPointEnvSharesTheCache: points run several at once share the CPU buffer
// cache's cap; one at a time, or with the user's own CAPTIONGO_CPU_CACHE, the
// environment is left as it is.
func TestPointEnvSharesTheCache(t *testing.T) {
	t.Setenv("CAPTIONGO_CPU_CACHE", "")
	os.Unsetenv("CAPTIONGO_CPU_CACHE")
	find := func(env []string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "CAPTIONGO_CPU_CACHE="); ok {
				return v
			}
		}
		return ""
	}
	if v := find(pointEnv(1)); v != "" {
		t.Errorf("one job: CAPTIONGO_CPU_CACHE=%s set", v)
	}
	want := fmt.Sprint(torch.CPUCache().CapBytes >> 20 / 4)
	if v := find(pointEnv(4)); v != want {
		t.Errorf("four jobs: CAPTIONGO_CPU_CACHE=%q, want %s (a quarter of this process's cap)", v, want)
	}
	t.Setenv("CAPTIONGO_CPU_CACHE", "77")
	if v := find(pointEnv(4)); v != "77" {
		t.Errorf("the user's CAPTIONGO_CPU_CACHE=77 became %q", v)
	}
}

func TestSweepPoints(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "base.toml"), []byte("epochs = 2\n"), 0o644)
	p := filepath.Join(dir, "sweep_x.toml")
	os.WriteFile(
		p,
		[]byte("base = \"base.toml\"\n[grid]\nlr = [1e-3, 3e-4]\nhidden_size = [64, 128]\n[set]\nsynth_n = 40\n"),
		0o644,
	)
	s, err := LoadSweep(p)
	if err != nil {
		t.Fatal(err)
	}
	pts := s.Points()
	var names []string
	for _, pt := range pts {
		names = append(names, pt.Name)
	}
	want := "hidden_size-64_lr-0.001 hidden_size-64_lr-0.0003 hidden_size-128_lr-0.001 hidden_size-128_lr-0.0003"
	if strings.Join(names, " ") != want {
		t.Errorf("points %v, want %s", names, want)
	}
	s.Sample, s.Seed = 2, 7
	a := s.Points()
	b := s.Points()
	if len(a) != 2 || a[0].Name != b[0].Name || a[1].Name != b[1].Name {
		t.Errorf("seeded sample not stable: %v %v", a, b)
	}
	os.WriteFile(p, []byte("base = \"base.toml\"\n[grid]\nlearning = [1]\n"), 0o644)
	if _, err := LoadSweep(p); err == nil || !strings.Contains(err.Error(), "grid.learning: not a config key") {
		t.Errorf("bad grid key: %v", err)
	}
	os.WriteFile(p, []byte("base = \"base.toml\"\n[grid]\nepochs = [0, 1]\n"), 0o644)
	if _, err := LoadSweep(p); err == nil || !strings.Contains(err.Error(), "point epochs-0") {
		t.Errorf("invalid point: %v", err)
	}
}

func TestShippedSweepsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../experiments/sweep_*.toml")
	if len(files) == 0 {
		t.Fatal("no experiments/sweep_*.toml")
	}
	for _, f := range files {
		if _, err := LoadSweep(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
