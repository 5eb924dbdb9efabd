package runfolder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/model"
)

// TestOpen: a manifest written is read back whole; the weights default to
// best.gt, then the last checkpoint, and a file given wins; a folder without a
// manifest says why, and how to add one when it is a run from before it.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	info := Info{
		Model: model.Config{
			VocabSize:    30,
			EmbedSize:    8,
			HiddenSize:   8,
			NumLayers:    1,
			Decoder:      "attention",
			AttentionDim: 16,
			Backbone:     model.BackboneFID,
		},
		Transform: data.Transform{Size: 299, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]},
		Data:      "../shared/data/flickr8k-224", DataOptions: data.Options{Format: "kaggle",
			SplitLists: "../shared/data/flickr8k-text"},
		Vocab: Vocab, Weights: "ckpt-000000010/model.gt", Epoch: 2, Step: 10,
		BestMetric: BestMetric{Name: "val_loss", Value: 2.5, HigherIsBetter: false, Epoch: 1},
	}
	if err := Write(dir, info); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Info.Model != info.Model || r.Info.Transform != info.Transform || r.Info.DataOptions != info.DataOptions ||
		r.Info.BestMetric != info.BestMetric || r.Info.Data != info.Data {
		t.Errorf("read back %+v, wrote %+v", r.Info, info)
	}
	if r.Weights != filepath.Join(dir, info.Weights) {
		t.Errorf("weights %s, want the last checkpoint's", r.Weights)
	}
	os.WriteFile(filepath.Join(dir, Best), []byte("x"), 0o644)
	if r, _ := Open(dir); r.Weights != filepath.Join(dir, Best) {
		t.Errorf("weights %s, want best.gt", r.Weights)
	}
	given := filepath.Join(dir, "ckpt-000000010", "model.gt")
	os.MkdirAll(filepath.Dir(given), 0o755)
	os.WriteFile(given, []byte("x"), 0o644)
	if r, err := Open(given); err != nil || r.Weights != given || r.Dir != dir {
		t.Errorf("Open(a weight file) = %+v, %v", r, err)
	}

	legacy := t.TempDir()
	os.WriteFile(filepath.Join(legacy, State), []byte("{}"), 0o644)
	for _, c := range []struct{ dir, want string }{
		{legacy, "(the run predates it): run `captiongo train -config " + filepath.Join(legacy, Config) +
			" -set resume=true`"},
		{t.TempDir(), "no manifest.json (give a run folder made by captiongo train)"},
		{filepath.Join(dir, "absent"), "does not exist"},
	} {
		if _, err := Open(c.dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want %q", c.dir, err, c.want)
		}
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, Manifest), []byte(`{"model": {"vocab_size": "x"}}`), 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), filepath.Join(bad, Manifest)) {
		t.Errorf("a bad manifest: %v", err)
	}
}
