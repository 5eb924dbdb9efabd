package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
)

// Self-critical sequence training (Rennie et al. 2017): the model samples
// captions, each is rewarded (CIDEr-D against the image's references), and the
// loss -(reward - baseline) * log p(caption) raises the probability of the
// captions that beat the baseline (the greedy caption's reward, or the mean of
// the image's other samples).

// Sample draws k captions for each of the stepper's rows (images): at each
// step a token from softmax(log p / temperature) per row, until <EOS> or
// maxLen tokens. The stepper is reordered to rows*k rows (image i's samples
// are rows i*k .. i*k+k-1, returned in that order). Row r draws from
// rngs[r] alone (rows*k streams), so a row's caption depends on its stream
// and its image only: split over processes, each seeding the streams of its
// share of the rows as one process would, a batch draws one process's
// captions. The caller holds no-grad mode.
func Sample(s Stepper, rows, k, maxLen int, temperature float64, rngs []*rand.Rand) []Hypothesis {
	if len(rngs) != rows*k {
		panic(fmt.Sprintf("model.Sample: %d random streams for %d x %d rows", len(rngs), rows, k))
	}
	if k > 1 {
		rep := make([]int64, 0, rows*k)
		for i := 0; i < rows; i++ {
			for j := 0; j < k; j++ {
				rep = append(rep, int64(i))
			}
		}
		s.Reorder(rep)
	}
	p := []float64{}
	return decodeRows(rows*k, maxLen, func(tok []int64) ([]int64, []float32) {
		lp, V := s.Step(tok)
		ids, picked := make([]int64, len(tok)), make([]float32, len(tok))
		for r, t := range tok {
			if t == data.EOS { // a finished row (a live one is never fed <EOS>): no draw
				continue
			}
			row := lp[r*V : (r+1)*V]
			w := sampleRow(row, temperature, rngs[r], &p)
			ids[r], picked[r] = int64(w), row[w]
		}
		return ids, picked
	})
}

// sampleRow draws an index with probability softmax(row / temperature) by
// inverse transform sampling; buf is scratch space.
func sampleRow(row []float32, temperature float64, rng *rand.Rand, buf *[]float64) int {
	if cap(*buf) < len(row) {
		*buf = make([]float64, len(row))
	}
	p := (*buf)[:len(row)]
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	sum := 0.0
	for i, v := range row {
		p[i] = math.Exp((float64(v) - m) / temperature)
		sum += p[i]
	}
	u := rng.Float64() * sum
	for i, v := range p {
		if u < v {
			return i
		}
		u -= v
	}
	return len(row) - 1
}

// TokenTensor lays captions out as the decoder reads them: <SOS>, the words,
// <EOS>, padded with <PAD> to the longest, as an N x T int64 tensor.
func TokenTensor(hs []Hypothesis, device gotch.Device) *ts.Tensor {
	T := 0
	for _, h := range hs {
		T = max(T, len(h.Tokens)+2)
	}
	flat := make([]int64, len(hs)*T)
	for i, h := range hs {
		copy(flat[i*T:], h.IDs())
	}
	return ts.MustOfSlice(flat).MustView([]int64{int64(len(hs)), int64(T)}, true).MustTo(device, true)
}

// SCSTLoss is self-critical training's loss for captions teacher-forced
// through the decoder: logits (T-1) x N x V aligned with tokens[:, 1:]
// (N x T, <PAD> after <EOS>), and each caption's advantage (reward minus
// baseline). Each caption's log-probability is the sum of its tokens' (its
// <EOS> included); the loss is -mean(advantage * log p).
func SCSTLoss(logits, tokens *ts.Tensor, advantage []float32) (*ts.Tensor, error) {
	sz := logits.MustSize()
	if len(sz) != 3 || int(sz[1]) != len(advantage) {
		return nil, fmt.Errorf("scst loss: logits %v for %d advantages", sz, len(advantage))
	}
	T := tokens.MustSize()[1]
	tgt := tokens.MustNarrow(1, 1, T-1, false).MustT(true).MustContiguous(true) // (T-1) x N
	idx := tgt.MustUnsqueeze(2, false)
	lsm := logits.MustLogSoftmax(2, gotch.Float, false)
	picked := lsm.MustGather(2, idx, false, true).MustSqueezeDim(2, true) // each step's target log-probability
	idx.MustDrop()
	mask := tgt.MustNe(ts.IntScalar(int64(data.PAD)), true).MustTotype(gotch.Float, true)
	perCap := picked.MustMul(mask, true).MustSumDimIntlist([]int64{0}, false, gotch.Float, true) // N
	mask.MustDrop()
	adv := ts.MustOfSlice(advantage).MustTo(logits.MustDevice(), true)
	loss := perCap.MustMul(adv, true).MustMean(gotch.Float, true).MustNeg(true)
	adv.MustDrop()
	return loss, nil
}
