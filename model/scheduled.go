package model

import (
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// ScheduledSampling (Bengio et al. 2015) changes teacher forcing: from the
// second word on, each row's input is, with probability P, a sample from the
// model's own previous output distribution (no gradient through the choice)
// instead of the true word. Rng draws the coins and the samples, so a seeded
// step repeats. Fed, when not nil, records each step's input tokens (tests).
type ScheduledSampling struct {
	P   float64
	Rng *rand.Rand
	Fed *[][]int64
}

// active reports whether ss changes anything.
func (ss *ScheduledSampling) active() bool { return ss != nil && ss.P > 0 }

// mix returns step t's input tokens: the true ones (truth, t >= 1), each
// replaced with probability P by a sample from softmax(prev) (B x V logits).
func (ss *ScheduledSampling) mix(truth []int64, prev *ts.Tensor) []int64 {
	out := append([]int64(nil), truth...)
	var lp []float32
	var V int
	buf := []float64{}
	for r := range out {
		if ss.Rng.Float64() >= ss.P {
			continue
		}
		if lp == nil {
			var x *ts.Tensor
			torch.NoGrad(func() { x = prev.MustDetach(false) })
			lp = torch.Float32s(x)
			x.MustDrop()
			V = len(lp) / len(out)
		}
		out[r] = int64(sampleRow(lp[r*V:(r+1)*V], 1, ss.Rng, &buf))
	}
	return out
}

// record notes a step's input tokens when Fed is set.
func (ss *ScheduledSampling) record(tok []int64) {
	if ss != nil && ss.Fed != nil {
		*ss.Fed = append(*ss.Fed, tok)
	}
}

// DecodeFeaturesSS is DecodeFeatures with scheduled sampling (nil or P = 0:
// plain teacher forcing).
func (m *Captioner) DecodeFeaturesSS(feat, tokens *ts.Tensor, train bool, ss *ScheduledSampling,
) (logits, alphas *ts.Tensor) {
	return m.dec.teacher(feat, tokens, train, ss)
}

// columns returns tokens (B x T int64) as T columns of B values.
func columns(tokens *ts.Tensor) [][]int64 {
	sz := tokens.MustSize()
	B, T := int(sz[0]), int(sz[1])
	flat := make([]int64, B*T)
	c := tokens.MustTo(gotch.CPU, false).MustContiguous(true)
	c.MustCopyData(flat, uint(B*T))
	c.MustDrop()
	out := make([][]int64, T)
	for t := range out {
		out[t] = make([]int64, B)
		for b := 0; b < B; b++ {
			out[t][b] = flat[b*T+t]
		}
	}
	return out
}
