package infer

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train"
)

// TestExplainAndAttentionMaps trains a tiny attention run and explains one
// picture: one PNG per word, an HTML page linking every word, finite
// completeness numbers; Saliency, Grad-CAM and occlusion too; the attention
// maps PNG; and an unknown method is refused.
func TestExplainAndAttentionMaps(t *testing.T) {
	out := t.TempDir()
	cfg := train.DefaultConfig()
	cfg.Name, cfg.OutDir, cfg.SynthN, cfg.FreqThreshold = "tiny", out, 30, 1
	cfg.ImageSize, cfg.Crop, cfg.RandomCrop = 139, 0, false
	cfg.Decoder, cfg.FeatureLayer, cfg.AttentionDim = "attention", "Mixed_5d", 16
	cfg.EmbedSize, cfg.HiddenSize, cfg.Epochs, cfg.BatchSize = 16, 16, 1, 16
	cfg.EvalImages, cfg.SampleImages, cfg.MaxLen, cfg.CaptionSampling = 2, 1, 6, "one"
	err := torch.Run(func() error {
		_, err := train.Run(cfg, train.Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(out, ".data", "shapes-n30-s1", "Images", "shape_00003.png")
	err = torch.Run(func() error {
		m, err := Load(filepath.Join(out, "tiny"), "cpu")
		if err != nil {
			return err
		}
		var log strings.Builder
		dir := filepath.Join(out, "explain")
		words, err := m.Explain(
			img,
			ExplainOptions{Method: "ig", Steps: 4, Baseline: "zero", Beam: 1, MaxLen: 6, Out: dir},
			&log,
		)
		if err != nil {
			return err
		}
		if len(words) == 0 {
			t.Fatalf("no words explained:\n%s", log.String())
		}
		page, err := os.ReadFile(filepath.Join(dir, "shape_00003.html"))
		if err != nil {
			return err
		}
		for _, w := range words {
			if _, err := os.Stat(filepath.Join(dir, w.PNG)); err != nil {
				t.Errorf("word %q: %v", w.Word, err)
			}
			if !strings.Contains(string(page), w.PNG) {
				t.Errorf("the page does not show %s", w.PNG)
			}
			if math.IsNaN(w.Sum) || math.IsNaN(w.FX) || w.Sum == 0 {
				t.Errorf("word %q: attributions sum %v, f(x) %v", w.Word, w.Sum, w.FX)
			}
		}
		if !strings.Contains(log.String(), "completeness gap") {
			t.Errorf("log:\n%s", log.String())
		}
		if _, err := m.Explain(img, ExplainOptions{Method: "saliency", Beam: 1, MaxLen: 6, Baseline: "zero", Out: dir},
			&log); err != nil {
			return err
		}
		for _, method := range []Method{MethodGradCAM, MethodOcclusion} {
			ws, err := m.Explain(
				img,
				ExplainOptions{
					Method:   method,
					Beam:     1,
					MaxLen:   6,
					Baseline: "zero",
					Out:      filepath.Join(out, string(method)),
				},
				&log,
			)
			if err != nil {
				return err
			}
			if len(ws) != len(words) {
				t.Errorf("%s explained %d words, ig %d", method, len(ws), len(words))
			}
		}
		if _, err := m.Explain(img, ExplainOptions{Method: "lime", Baseline: "zero", Out: dir}, &log); err == nil ||
			!strings.Contains(err.Error(), "use ig, saliency, gradcam or occlusion") {
			t.Errorf("unknown method: %v", err)
		}
		caps := m.CaptionFiles([]string{img}, 1, 6, 1)
		if n := len(strings.Fields(caps[0].Caption)); len(caps[0].Attention) == 0 || len(caps[0].Attention) < n ||
			len(caps[0].Attention) > n+1 || len(caps[0].Attention[0]) != 15*15 {
			t.Errorf("caption %q with attention for %d steps", caps[0].Caption, len(caps[0].Attention))
		}
		if caps[0].Caption != "" {
			png, err := m.AttentionPNG(img, caps[0].Caption)
			if err != nil || len(png) < 100 {
				t.Errorf("attention PNG: %d bytes, %v", len(png), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
