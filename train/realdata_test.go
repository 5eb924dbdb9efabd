package train

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/model"
)

// flickrSubset lays out the first n images of flickr8k-224 (sorted by name)
// as a Kaggle folder: their captions in captions.txt, Images/ as links.
func flickrSubset(t *testing.T, n int) string {
	t.Helper()
	src := testutil.SharedData(t, "flickr8k-224")
	f, err := os.Open(filepath.Join(src, "captions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rows[1:] {
		names[r[0]] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	keep := map[string]bool{}
	for _, k := range sorted[:n] {
		keep[k] = true
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "Images"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "captions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(out)
	w.Write(rows[0])
	for _, r := range rows[1:] {
		if keep[r[0]] {
			w.Write(r)
		}
	}
	w.Flush()
	out.Close()
	for k := range keep {
		abs, _ := filepath.Abs(filepath.Join(src, "Images", k))
		if err := os.Symlink(abs, filepath.Join(dir, "Images", k)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestTrainOnRealPhotosWithPretrainedWeights trains the LSTM captioner for a
// few epochs on 400 real Flickr8k photographs with the pretrained Inception-v3
// (weights = "fid-inception", from make setup): the training loss falls and
// the captions are made of real words. In CI a missing weight file or data set
// fails the test.
func TestTrainOnRealPhotosWithPretrainedWeights(t *testing.T) {
	if _, err := model.FIDWeightsPath(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cfg := tiny(t, t.TempDir())
	cfg.Data, cfg.Weights, cfg.Backbone = flickrSubset(t, 400), model.FIDWeights, "auto"
	cfg.FreqThreshold, cfg.Normalize = 1, "half" // every training word has an id: <UNK> is never a target
	cfg.ImageSize, cfg.Crop, cfg.RandomCrop, cfg.FeatureCache = 160, 0, false, true
	cfg.EmbedSize, cfg.HiddenSize, cfg.Dropout, cfg.BackboneDropout = 128, 256, 0.2, 0.2
	cfg.Epochs, cfg.BatchSize, cfg.LR = 6, 32, 3e-3
	cfg.EvalImages, cfg.SampleImages, cfg.MaxLen = 40, 4, 20
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "backbone: fid Inception-v3") || res.State.Config.Backbone != "fid" {
		t.Errorf(
			"the pretrained FID backbone was not used (config backbone %q):\n%s",
			res.State.Config.Backbone,
			log.String(),
		)
	}
	h := res.State.History
	if len(h) != cfg.Epochs {
		t.Fatalf("%d epochs in the history, want %d", len(h), cfg.Epochs)
	}
	t.Logf(
		"train loss by epoch: %.3f -> %.3f; val BLEU-4 %.3f, CIDEr-D %.3f",
		h[0].TrainLoss,
		h[len(h)-1].TrainLoss,
		h[len(h)-1].Bleu4,
		h[len(h)-1].CIDEr,
	)
	if h[len(h)-1].TrainLoss > 0.85*h[0].TrainLoss {
		t.Errorf("train loss fell only from %.3f to %.3f", h[0].TrainLoss, h[len(h)-1].TrainLoss)
	}
	vocab, err := data.LoadVocab(filepath.Join(res.RunDir, "vocab.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) == 0 {
		t.Fatal("no sample captions")
	}
	ds, err := data.Load(cfg.Data, cfg.DataOptions())
	if err != nil {
		t.Fatal(err)
	}
	split := map[string]string{}
	for _, e := range ds.Examples {
		split[e.Path] = e.Split
	}
	distinct := map[string]bool{}
	for _, s := range res.Samples {
		if split[s.Image] != data.Test {
			t.Errorf("sample %s is a %q image, want the test photographs", s.Image, split[s.Image])
		}
		t.Logf("%s: %q (a reference: %q)", filepath.Base(s.Image), s.Generated, s.Refs[0])
		words := strings.Fields(s.Generated)
		if len(words) < 3 {
			t.Errorf("%s: caption %q has fewer than 3 words", s.Image, s.Generated)
		}
		for _, w := range words {
			if vocab.ID(w) <= data.UNK {
				t.Errorf("%s: caption %q has %q, not a word of the training captions", s.Image, s.Generated, w)
			}
			distinct[w] = true
		}
	}
	if len(distinct) < 4 {
		t.Errorf("the sample captions use only %d distinct words: %v", len(distinct), distinct)
	}
}
