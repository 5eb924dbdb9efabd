package infer

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/metrics"
	"github.com/captiongo/captiongo/train"
)

// TestCaptionAndEval trains a tiny run, captions files with it (greedy, beam,
// an unreadable file), evaluates its test split, and re-scores the written
// COCO results file with the score command's code: the numbers agree.
func TestCaptionAndEval(t *testing.T) {
	out := t.TempDir()
	cfg := train.DefaultConfig()
	cfg.Name, cfg.OutDir, cfg.SynthN, cfg.FreqThreshold = "tiny", out, 40, 1
	cfg.ImageSize, cfg.Crop, cfg.RandomCrop = 75, 0, false
	cfg.EmbedSize, cfg.HiddenSize, cfg.Epochs, cfg.BatchSize = 16, 16, 1, 16
	cfg.EvalImages, cfg.SampleImages, cfg.MaxLen = 4, 1, 10
	err := torch.Run(func() error {
		_, err := train.Run(cfg, train.Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(out, "tiny")
	imgs := filepath.Join(out, ".data", "shapes-n40-s1", "Images")
	err = torch.Run(func() error {
		m, err := Load(run, "cpu")
		if err != nil {
			return err
		}
		files, err := ImageFiles([]string{imgs})
		if err != nil || len(files) != 40 {
			t.Fatalf("ImageFiles: %d, %v", len(files), err)
		}
		caps := m.CaptionFiles(append(files[:3:3], filepath.Join(out, "nope.png")), 1, 10, 2)
		if caps[3].Err == "" || !strings.Contains(caps[3].Err, "nope.png") {
			t.Errorf("unreadable image: %+v", caps[3])
		}
		for _, c := range caps[:3] {
			if c.Err != "" || c.Caption == "" || c.LogProb >= 0 {
				t.Errorf("caption %+v", c)
			}
		}
		b1 := m.CaptionFiles(files[:3], 1, 10, 3)
		for i := range b1 {
			if b1[i].Caption != caps[i].Caption {
				t.Errorf("batching changed a caption: %q vs %q", b1[i].Caption, caps[i].Caption)
			}
		}
		res := filepath.Join(out, "results.json")
		r, err := m.Evaluate("", data.Test, 2, 10, res, "")
		if err != nil {
			return err
		}
		if r.Images != 4 {
			t.Errorf("%d test images, want 4", r.Images)
		}
		// Re-score the results file against a COCO annotation file of the same split.
		ds, _ := data.Load(filepath.Join(out, ".data", "shapes-n40-s1"), data.Options{Seed: 1})
		type ann struct {
			ImageID string `json:"image_id"`
			Caption string `json:"caption"`
		}
		var anns []ann
		var images []map[string]string
		for _, e := range ds.SplitExamples(data.Test) {
			images = append(images, map[string]string{"id": e.ImageID})
			for _, c := range e.Captions {
				anns = append(anns, ann{e.ImageID, c})
			}
		}
		b, _ := json.Marshal(map[string]any{"images": images, "annotations": anns})
		refs := filepath.Join(out, "refs.json")
		os.WriteFile(refs, b, 0o644)
		sc, err := metrics.ScoreFiles(refs, res)
		if err != nil {
			return err
		}
		if math.Abs(sc.Bleu4-r.Scores.Bleu4) > 1e-12 || math.Abs(sc.CIDEr-r.Scores.CIDEr) > 1e-12 {
			t.Errorf("eval %+v, score of its results file %+v", r.Scores, sc)
		}
		return nil
	})
	if pe, ok := err.(*torch.PanicError); ok {
		t.Fatalf("%v\n%s", pe, pe.Stack)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := torch.Run(func() error { _, err := Load(filepath.Join(out, "nothing"), "cpu"); return err }); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("loading a missing run: %v", err)
	}
}
