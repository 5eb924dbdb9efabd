package train

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig: whatever an experiment file holds, LoadConfig does not
// panic; an error is a *ConfigError naming the file, and an accepted config is
// valid and reads back from its own TOML to the same config.
func FuzzLoadConfig(f *testing.F) {
	files, _ := filepath.Glob("../experiments/*.toml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && !strings.Contains(p, "sweep_") {
			f.Add(b)
		}
	}
	f.Add([]byte("epochs = -1\n"))
	f.Add([]byte("lr = \"fast\"\n"))
	f.Add([]byte("decoder = \"transformer\"\nnot_a_key = 3\n"))
	f.Add([]byte("[grid]\nlr = [1, 2]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "x.toml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p, nil)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), p) {
				t.Fatalf("not a ConfigError naming the file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		q := filepath.Join(t.TempDir(), "y.toml")
		os.WriteFile(q, []byte(cfg.TOML()), 0o644)
		again, err := LoadConfig(q, nil)
		if err != nil {
			t.Fatalf("its own TOML does not load: %v\n%s", err, cfg.TOML())
		}
		again.Name = cfg.Name
		if again.TOML() != cfg.TOML() {
			t.Fatalf("TOML round trip changed the config:\n%s\n---\n%s", cfg.TOML(), again.TOML())
		}
	})
}

// FuzzParseState: whatever state.json holds, parseState does not panic; an
// error names the file, and an accepted state has counters >= 0 and names a
// checkpoint inside the run folder.
func FuzzParseState(f *testing.F) {
	b, _ := json.Marshal(State{Epoch: 1, Batch: 3, Step: 18, AdamSteps: 18, Weights: "ckpt-000000018/model.gt",
		Moments: "ckpt-000000018/optim.gt", Partial: EpochProgress{LossSum: 9.5, Batches: 3, Images: 48}})
	f.Add(b)
	f.Add([]byte(`{"epoch": -1, "weights": "a", "moments": "b"}`))
	f.Add([]byte(`{"weights": "../../etc/passwd", "moments": "b"}`))
	f.Add([]byte(`{"config": {"epochs": "x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState("run/state.json", b)
		if err != nil {
			if !strings.Contains(err.Error(), "run/state.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if st.Epoch < 0 || st.Batch < 0 || st.Step < 0 || st.Weights == "" || filepath.IsAbs(st.Weights) {
			t.Fatalf("accepted %+v", st)
		}
	})
}
