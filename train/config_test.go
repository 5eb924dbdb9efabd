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
			continue // sweep.TestShippedSweepsAreValid
		}
		if _, err := LoadConfig(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
