package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/train"
)

// FuzzLoadSweep: whatever a sweep file holds, LoadSweep does not panic; an
// error is a *train.ConfigError naming the file, and an accepted sweep's points
// all have names and load as configs.
func FuzzLoadSweep(f *testing.F) {
	files, _ := filepath.Glob("../experiments/sweep_*.toml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("base = \"base.toml\"\n[grid]\nlr = [1e-3, 3e-4]\n[set]\nepochs = 1\n"))
	f.Add([]byte("base = \"base.toml\"\nsample = -2\n[grid]\nhidden_size = []\n"))
	f.Add([]byte("base = \"base.toml\"\n[grid]\nepochs = [0, 1]\n[slurm]\ntime = \"x\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "base.toml"), []byte("epochs = 1\nsynth_n = 40\n"), 0o644)
		p := filepath.Join(dir, "sweep_x.toml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := LoadSweep(p)
		if err != nil {
			var ce *train.ConfigError
			if !errors.As(err, &ce) && !strings.Contains(err.Error(), p) {
				t.Fatalf("error names neither field nor file: %v", err)
			}
			return
		}
		for _, pt := range s.Points() {
			if pt.Name == "" {
				t.Fatalf("a point without a name: %+v", pt)
			}
		}
	})
}
