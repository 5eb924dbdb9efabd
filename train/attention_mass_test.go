package train

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// loadBest opens a run's best checkpoint with its vocabulary and evaluation
// transform (call on the torch thread).
func loadBest(res *Result) (*model.Captioner, *data.Vocab, data.Transform, error) {
	cfg := res.State.Config
	tf := data.Transform{Size: cfg.ImageSize, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]}
	vocab, err := data.LoadVocab(filepath.Join(res.RunDir, "vocab.json"))
	if err != nil {
		return nil, nil, tf, err
	}
	m, err := model.NewCaptioner(
		model.Config{VocabSize: vocab.Len(), EmbedSize: cfg.EmbedSize, HiddenSize: cfg.HiddenSize, NumLayers: 1,
			Decoder: cfg.Decoder, AttentionDim: cfg.AttentionDim, FeatureLayer: cfg.FeatureLayer},
		gotch.CPU,
	)
	if err != nil {
		return nil, nil, tf, err
	}
	return m, vocab, tf, m.LoadFile(filepath.Join(res.RunDir, "best.gt"))
}

// attentionMass captions the pictures greedily and measures, over pictures
// with one object, where the attention of the words naming that object (its
// colour and its shape) goes: the mean share of attention mass on map places
// covered by the object's mask, and the mean share the object would get from
// uniform attention (its area). colours is the share of colour words in all
// the captions that name a colour the picture has.
func attentionMass(
	t *testing.T,
	res *Result,
	scenes []data.SynthScene,
	imagesDir string,
) (mass, area float64, words int, colours float64) {
	t.Helper()
	err := torch.Run(func() error {
		m, vocab, tf, err := loadBest(res)
		if err != nil {
			return err
		}
		side := tf.OutSide()
		colourNames := map[string]bool{}
		for _, sc := range data.SynthScenes(200, 1) {
			for _, o := range sc.Objects {
				colourNames[o.Color] = true
			}
		}
		named, right := 0, 0
		for _, sc := range scenes {
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
			st := m.StepperFromFeatures(f)
			h := model.Greedy(st, 1, 20)[0]
			model.CloseStepper(st)
			has := map[string]bool{}
			for _, o := range sc.Objects {
				has[o.Color] = true
			}
			for _, w := range vocab.Decode(h.Tokens) {
				if colourNames[w] {
					named++
					if has[w] {
						right++
					}
				}
			}
			if len(sc.Objects) != 1 {
				f.MustDrop()
				continue
			}
			ids := h.IDs()
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
		colours = float64(right) / float64(max(named, 1))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if words == 0 {
		t.Fatal("no generated word named a one-object picture's colour or shape")
	}
	return mass / float64(words), area / float64(words), words, colours
}

// TestDemoDescribesAndAttends trains the shipped demo, experiments/shapes.toml
// (attention over the frozen random backbone's Mixed_5d map; about 5 minutes
// on 2 cores), and checks on the held-out (val + test) pictures that its
// captions describe them and that it looks at what it names:
//   - at least 80% of the colour words it writes are colours in the picture
//     (the LSTM decoder over pooled features, shapes_lstm.toml, managed 38%);
//   - on one-object pictures, the words naming the object's colour or shape put
//     at least 3 times the object's share of the picture's area on the object.
func TestDemoDescribesAndAttends(t *testing.T) {
	out := t.TempDir()
	cfg, err := LoadConfig(
		filepath.Join(testutil.Root(), "experiments", "shapes.toml"),
		[]string{"out_dir=" + strconv.Quote(out), "log_every=1000"},
	)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	dataDir := filepath.Join(out, ".data", fmt.Sprintf("shapes-n%d-s%d", cfg.SynthN, cfg.SynthSeed))
	ds, err := data.Load(
		dataDir,
		data.Options{Seed: cfg.SplitSeed, Ratios: [3]float64{cfg.TrainRatio, cfg.ValRatio, cfg.TestRatio}},
	)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, e := range append(ds.SplitExamples(data.Val), ds.SplitExamples(data.Test)...) {
		held[filepath.Base(e.Path)] = true
	}
	var scenes []data.SynthScene
	for _, sc := range data.SynthScenes(cfg.SynthN, cfg.SynthSeed) {
		if held[sc.File] {
			scenes = append(scenes, sc)
		}
	}
	mass, area, n, colours := attentionMass(t, res, scenes, filepath.Join(dataDir, "Images"))
	last := res.State.History[len(res.State.History)-1]
	t.Logf(
		"%d held-out pictures: val BLEU-4 %.3f, CIDEr-D %.3f; %.0f%% of colour words right; %d colour/shape words on "+
			"one-object pictures: attention mass inside the object %.3f, object area %.3f (x%.1f)",
		len(scenes),
		last.Bleu4,
		last.CIDEr,
		100*colours,
		n,
		mass,
		area,
		mass/area,
	)
	if colours < 0.8 {
		t.Errorf("only %.0f%% of the colour words name a colour in the picture", 100*colours)
	}
	if mass < 3*area {
		t.Errorf(
			"attention mass inside the object %.3f is not well above its area share %.3f\n%s",
			mass,
			area,
			log.String(),
		)
	}

	// Integrated Gradients of the colour word on 12 one-object pictures: the
	// share of |attribution| on the object's pixels against its area.
	igMass, igArea, k := 0.0, 0.0, 0
	err = torch.Run(func() error {
		m, vocab, tf, err := loadBest(res)
		if err != nil {
			return err
		}
		side := tf.OutSide()
		for _, sc := range scenes {
			if len(sc.Objects) != 1 || k == 12 {
				continue
			}
			obj := sc.Objects[0]
			img, err := data.DecodeImage(filepath.Join(dataDir, "Images", sc.File))
			if err != nil {
				return err
			}
			buf := make([]float32, 3*side*side)
			tf.Apply(img, nil, buf)
			x := torch.FromFloat32s(buf, []int64{1, 3, int64(side), int64(side)}, gotch.CPU)
			h := m.Caption(x, 1, 20)[0]
			words := vocab.Decode(h.Tokens)
			caption := h.IDs()
			for i, w := range words {
				if w != obj.Color {
					continue
				}
				zero := x.MustZerosLike(false)
				a, err := m.IntegratedGradients(x, zero, caption, i, 16)
				zero.MustDrop()
				if err != nil {
					return err
				}
				mask := obj.Mask(side)
				in, all, cover := 0.0, 0.0, 0.0
				for c := 0; c < 3; c++ {
					for p := 0; p < side*side; p++ {
						v := math.Abs(float64(a.Values[c*side*side+p]))
						all += v
						if mask[p] {
							in += v
						}
					}
				}
				for _, b := range mask {
					if b {
						cover++
					}
				}
				igMass += in / all
				igArea += cover / float64(side*side)
				k++
				break
			}
			x.MustDrop()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if k == 0 {
		t.Fatal("no one-object picture's colour was named")
	}
	igMass, igArea = igMass/float64(k), igArea/float64(k)
	t.Logf(
		"Integrated Gradients of the colour word on %d one-object pictures: |attribution| inside the object %.3f, object "+
			"area %.3f (x%.1f)",
		k,
		igMass,
		igArea,
		igMass/igArea,
	)
	if igMass < 3*igArea {
		t.Errorf("|IG| inside the object %.3f is not well above its area share %.3f", igMass, igArea)
	}
}
