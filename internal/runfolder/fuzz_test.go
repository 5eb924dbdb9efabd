package runfolder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/model"
)

// FuzzOpen: whatever manifest.json holds, Open does not panic; an error names
// the file, and what it accepts has a valid model and transform (so captioning
// never builds a model from nonsense).
func FuzzOpen(f *testing.F) {
	good, _ := json.Marshal(Info{
		Model:     model.Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1},
		Transform: data.Transform{Size: 75, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}},
		Vocab:     Vocab, Weights: "ckpt-000000001/model.gt",
	})
	f.Add(good)
	f.Add([]byte(`{"model": {"vocab_size": 30, "embed_size": -1}, "vocab": "vocab.json"}`))
	f.Add([]byte(`{"model": {"vocab_size": 30, "embed_size": 8, "hidden_size": 8, "num_layers": 1,
		"decoder": "attention"}, "vocab": "vocab.json", "transform": {"size": 0}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, Manifest)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, Best), nil, 0o644)
		r, err := Open(dir)
		if err != nil {
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("error does not name the run: %v", err)
			}
			return
		}
		if err := r.Info.Model.Validate(); err != nil {
			t.Fatalf("accepted a manifest with an invalid model: %v", err)
		}
		if err := r.Info.Transform.Validate(); err != nil {
			t.Fatalf("accepted a manifest with an invalid transform: %v", err)
		}
	})
}
