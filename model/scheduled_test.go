package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
)

// TestScheduledSampling, for both decoders: with P = 1 every input after the
// first is the model's own sample, and the logits equal plain teacher forcing
// on exactly the tokens that were fed; with P = 0.3 about 30% of the inputs are
// replaced; in training mode the loss's gradient reaches the parameters.
func TestScheduledSampling(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(5)
		for _, cfg := range []Config{
			{VocabSize: 40, EmbedSize: 16, HiddenSize: 24, NumLayers: 2},
			{VocabSize: 40, EmbedSize: 16, HiddenSize: 24, NumLayers: 1, Decoder: DecoderAttention, AttentionDim: 12},
		} {
			m, err := NewCaptioner(cfg, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Decoder == "" {
				cfg.Decoder = DecoderLSTM
			}
			const B, T = 6, 9
			shape := []int64{B, 2048}
			if cfg.Attention() {
				shape = []int64{B, 5, 2048}
			}
			feat := ts.MustRandn(shape, gotch.Float, gotch.CPU)
			rng := rand.New(rand.NewPCG(1, 1))
			flat := make([]int64, B*T)
			for b := 0; b < B; b++ {
				flat[b*T] = data.SOS
				for i := 1; i < T; i++ {
					flat[b*T+i] = int64(4 + rng.IntN(36))
				}
			}
			tok := ts.MustOfSlice(flat).MustView([]int64{B, T}, true)
			var fed [][]int64
			var mixed, plain *ts.Tensor
			torch.NoGrad(func() {
				ss := &ScheduledSampling{P: 1, Rng: rand.New(rand.NewPCG(2, 2)), Fed: &fed}
				mixed, _ = m.DecodeFeaturesSS(feat, tok, false, ss)
				same := make([]int64, B*T)
				for b := 0; b < B; b++ {
					for i := 0; i < T-1; i++ {
						same[b*T+i] = fed[i][b]
					}
					same[b*T+T-1] = flat[b*T+T-1]
				}
				tok2 := ts.MustOfSlice(same).MustView([]int64{B, T}, true)
				plain, _ = m.DecodeFeatures(feat, tok2, false)
				tok2.MustDrop()
			})
			changed := 0
			for i := 1; i < T-1; i++ {
				for b := 0; b < B; b++ {
					if fed[i][b] != flat[b*T+i] {
						changed++
					}
				}
			}
			d := 0.0
			a, p := floats(mixed), floats(plain)
			for i := range a {
				d = math.Max(d, math.Abs(float64(a[i]-p[i])))
			}
			if len(fed) != T-1 || changed < B*(T-2)*3/4 || d > 1e-5 {
				t.Errorf("%s, P = 1: %d steps fed, %d of %d inputs replaced, logits differ from teacher forcing on "+
					"the fed tokens by %.3g", cfg.Decoder, len(fed), changed, B*(T-2), d)
			}
			// P = 0.3 over many rows: about 30% replaced.
			fed = nil
			big := ts.MustRandn(append([]int64{200}, shape[1:]...), gotch.Float, gotch.CPU)
			bflat := make([]int64, 200*T)
			for b := 0; b < 200; b++ {
				bflat[b*T] = data.SOS
				for i := 1; i < T; i++ {
					bflat[b*T+i] = int64(4 + rng.IntN(36))
				}
			}
			btok := ts.MustOfSlice(bflat).MustView([]int64{200, T}, true)
			ss := &ScheduledSampling{P: 0.3, Rng: rand.New(rand.NewPCG(3, 3)), Fed: &fed}
			logits, alphas := m.DecodeFeaturesSS(big, btok, true, ss)
			replaced := 0
			for i := 1; i < T-1; i++ {
				for b := 0; b < 200; b++ {
					if fed[i][b] != bflat[b*T+i] {
						replaced++
					}
				}
			}
			frac := float64(replaced) / float64(200*(T-2))
			if frac < 0.25 || frac > 0.33 {
				t.Errorf("%s, P = 0.3: %.3f of the inputs replaced", cfg.Decoder, frac)
			}
			loss := Loss(logits, btok)
			loss.MustBackward()
			for n, v := range m.VS.Variables() {
				if !v.MustRequiresGrad() {
					continue
				}
				g := v.MustGrad(false)
				if mx := g.MustAbs(false).MustMax(true); mx.Float64Values()[0] == 0 {
					t.Errorf("%s: no gradient reaches %s", cfg.Decoder, n)
				} else {
					mx.MustDrop()
				}
				g.MustDrop()
			}
			t.Logf("%s: P = 1 replaced %d of %d inputs, logits equal teacher forcing on them to %.2g; P = 0.3 "+
				"replaced %.3f", cfg.Decoder, changed, B*(T-2), d, frac)
			for _, x := range []*ts.Tensor{feat, tok, mixed, plain, big, btok, logits, loss} {
				x.MustDrop()
			}
			if alphas != nil {
				alphas.MustDrop()
			}
		}
	})
}
