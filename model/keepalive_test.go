package model

import (
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/sugarme/gotch"
)

// TestLoadKeepsTheModelAlive: gotch's VarStore.Variables returns struct copies
// of the variables, which do not keep the variables (and their finalizers,
// which free the libtorch tensors) alive. Loading into a model that the caller
// never uses again must still not let the collector free a variable halfway
// through the copy: once, on libtorch 2.11, that crashed the test binary
// (SIGSEGV in at_copy_). The collector runs very often here to make it likely.
func TestLoadKeepsTheModelAlive(t *testing.T) {
	dir := t.TempDir()
	run(t, func() {
		old := debug.SetGCPercent(1)
		defer debug.SetGCPercent(old)
		cfg := Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1}
		m, err := NewCaptioner(cfg, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(dir, "m.gt")
		if err := m.VS.Save(q); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			loadAndForget(t, cfg, q)
		}
	})
}

// loadAndForget loads q into a new captioner and never uses it again.
func loadAndForget(t *testing.T, cfg Config, q string) {
	m, err := NewCaptioner(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadFile(q); err != nil {
		t.Error(err)
	}
}
