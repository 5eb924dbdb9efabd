package train

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// attentionMass measures, over images with one object, where the attention of
// the words naming that object (its colour and its shape) goes: the mean share
// of attention mass on map places covered by the object's mask, and the mean
// share the object would get from uniform attention (its area).
func attentionMass(t *testing.T, res *Result, scenes []data.SynthScene, imagesDir string) (mass, area float64, words int) {
	t.Helper()
	cfg := res.State.Config
	vocab, err := data.LoadVocab(filepath.Join(res.RunDir, "vocab.json"))
	if err != nil {
		t.Fatal(err)
	}
	err = torch.Run(func() error {
		m, err := model.NewCaptioner(model.Config{VocabSize: vocab.Len(), EmbedSize: cfg.EmbedSize, HiddenSize: cfg.HiddenSize, NumLayers: 1,
			Decoder: cfg.Decoder, AttentionDim: cfg.AttentionDim, FeatureLayer: cfg.FeatureLayer}, gotch.CPU)
		if err != nil {
			return err
		}
		if err := m.LoadFile(filepath.Join(res.RunDir, "best.gt")); err != nil {
			return err
		}
		tf := data.Transform{Size: cfg.ImageSize, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]}
		side := tf.OutSide()
		for _, sc := range scenes {
			if len(sc.Objects) != 1 {
				continue
			}
			obj := sc.Objects[0]
			img, err := data.DecodeImage(filepath.Join(imagesDir, sc.File))
			if err != nil {
				return err
			}
			buf := make([]float32, 3*side*side)
			if err := tf.Apply(img, nil, buf); err != nil {
				return err
			}
			x := torch.FromFloat32s(buf, []int64{1, 3, int64(side), int64(side)}, gotch.CPU)
			f := m.Features(x, false)
			x.MustDrop()
			st := m.StepperFromPooled(f)
			h := model.Greedy(st, 1, 20)[0]
			model.CloseStepper(st)
			ids := []int64{data.SOS}
			for _, id := range h.Tokens {
				ids = append(ids, int64(id))
			}
			ids = append(ids, data.EOS)
			tok := torch.FromInt64s(ids, []int64{1, int64(len(ids))}, gotch.CPU)
			ws, err := m.AttentionWeights(f, tok)
			tok.MustDrop()
			f.MustDrop()
			if err != nil {
				return err
			}
			// Share of each map place covered by the mask (places form a g x g grid over the picture).
			P := len(ws[0][0])
			g := 1
			for g*g < P {
				g++
			}
			const sub = 8
			mask := obj.Mask(g * sub)
			cover := make([]float64, P)
			objArea := 0.0
			for y := 0; y < g*sub; y++ {
				for x := 0; x < g*sub; x++ {
					if mask[y*g*sub+x] {
						cover[(y/sub)*g+x/sub] += 1.0 / (sub * sub)
						objArea += 1.0 / float64(g*g*sub*sub)
					}
				}
			}
			for i, w := range vocab.Decode(h.Tokens) {
				if w != obj.Color && w != obj.Shape {
					continue
				}
				s := 0.0
				for p, a := range ws[0][i] {
					s += float64(a) * cover[p]
				}
				mass += s
				area += objArea
				words++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if words == 0 {
		t.Fatal("no generated word named a one-object picture's colour or shape")
	}
	return mass / float64(words), area / float64(words), words
}

// TestAttentionLooksAtTheObject trains the attention decoder on the synthetic
// shapes (frozen random backbone read at Mixed_5d, 139 px) and checks that the
// words naming an object's colour or shape put their attention on that object:
// on the held-out one-object pictures, the attention mass inside the object's
// mask must be well above the object's share of the picture.
func TestAttentionLooksAtTheObject(t *testing.T) {
	out := t.TempDir()
	cfg := DefaultConfig()
	cfg.Name, cfg.OutDir = "look", out
	cfg.SynthN, cfg.FreqThreshold = 800, 1
	cfg.ImageSize, cfg.Crop, cfg.RandomCrop, cfg.FeatureCache = 139, 0, false, true
	cfg.Decoder, cfg.FeatureLayer, cfg.AttentionDim, cfg.AlphaC = "attention", "Mixed_5d", 128, 1
	cfg.EmbedSize, cfg.HiddenSize, cfg.Dropout = 128, 128, 0.2
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.LRSchedule, cfg.GradClip = 4, 64, 2e-3, "cosine", 5
	cfg.EvalImages, cfg.SampleImages, cfg.MaxLen, cfg.LogEvery = 40, 1, 20, 1000
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	ds, err := data.Load(filepath.Join(out, ".data", "shapes-n800-s1"), data.Options{Seed: cfg.SplitSeed, Ratios: [3]float64{cfg.TrainRatio, cfg.ValRatio, cfg.TestRatio}})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, e := range append(ds.SplitExamples(data.Val), ds.SplitExamples(data.Test)...) {
		held[filepath.Base(e.Path)] = true
	}
	var scenes []data.SynthScene
	for _, sc := range data.SynthScenes(800, 1) {
		if held[sc.File] {
			scenes = append(scenes, sc)
		}
	}
	mass, area, n := attentionMass(t, res, scenes, filepath.Join(out, ".data", "shapes-n800-s1", "Images"))
	t.Logf("%d colour/shape words on held-out one-object pictures: attention mass inside the object %.3f, object area %.3f (x%.1f)", n, mass, area, mass/area)
	if mass < 3*area {
		t.Errorf("attention mass inside the object %.3f is not well above its area share %.3f\n%s", mass, area, log.String())
	}
}
