package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTOML(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exp.toml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigLayers(t *testing.T) {
	p := writeTOML(t, "# comment\nepochs = 7\nlr = 1e-3\n")
	cfg, err := LoadConfig(p, []string{"lr=5e-4", "decoder=lstm", "weights=torchvision"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Epochs != 7 || cfg.LR != 5e-4 || cfg.HiddenSize != 256 || cfg.Name != "exp" || cfg.Weights != "torchvision" {
		t.Errorf("defaults < file < -set broken: %+v", cfg)
	}
	if !strings.Contains(cfg.TOML(), "epochs = 7") {
		t.Errorf("resolved TOML lacks epochs:\n%s", cfg.TOML())
	}
}

func TestConfigErrorsNameFileLineField(t *testing.T) {
	cases := []struct {
		src  string
		sets []string
		want string
	}{
		{"epochs = 3\nlearning_rate = 0.1\n", nil, "exp.toml:2: learning_rate: unknown key"},
		{"epochs = 3\n\nbatch_size = \"big\"\n", nil, "exp.toml:3"},
		{"epochs = 0\n", nil, "exp.toml:1: epochs: 0: must be positive"},
		{"dropout = 0.5\ncrop = 400\n", nil, "exp.toml:2: crop: 400"},
		{"lr_schedule = \"linear\"\n", nil, `exp.toml:1: lr_schedule: "linear": want one of constant, cosine, step`},
		{"epochs = [1\n", nil, "exp.toml:1"},
		{"", []string{"epochs=-1"}, "-set epochs: epochs: -1"},
		{"", []string{"epoch=3"}, "-set: epoch: unknown key"},
		{"", []string{"epochs=many"}, "-set: epochs:"},
		{"", []string{"nonsense"}, "want key=value"},
	}
	for _, c := range cases {
		p := writeTOML(t, c.src)
		_, err := LoadConfig(p, c.sets)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: got %v, want an error containing %q", c.src, c.sets, err, c.want)
		}
	}
	if _, err := LoadConfig("/no/such.toml", nil); err == nil || !strings.Contains(err.Error(), "/no/such.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestShippedExperimentsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../experiments/*.toml")
	if len(files) < 3 {
		t.Fatalf("experiments: %v", files)
	}
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "sweep_") {
			if _, err := LoadSweep(f); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		if _, err := LoadConfig(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
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
