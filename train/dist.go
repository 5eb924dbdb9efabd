package train

import (
	"fmt"
	"os"
	"sort"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// Data-parallel training (Options.Dist): every rank builds the same run,
// rank 0's weights, optimiser state and progress are broadcast to the others
// before the first step, each rank takes its share of every global batch
// (batch_size stays the global batch), and the gradients are summed over the
// ranks, each rank's loss weighted by its share of the batch's target tokens
// (and of its images, for the attention penalty), so that the summed gradient
// is the one-process gradient of the whole batch; the sums run in DDP's
// buckets, overlapped with the backward pass (backward). Gradient clipping and the
// Adam step then run on identical gradients everywhere and the weights stay
// identical. Dropout's masks and scheduled sampling's coins come from a
// stream per rank, so runs with them equal one process in distribution, not
// bit for bit. Rank 0 alone writes the run folder; the others keep their
// events and logs in a scratch folder removed at the end. Evaluation is
// sharded: each rank computes the validation loss of every world-th batch and
// decodes every world-th batch of images (the batches a single process
// decodes, so the captions are its captions), and the sums and captions are
// gathered on every rank, so that model selection and early stopping agree.

// rank is this process's rank (0 without Options.Dist).
func (r *runner) rank() int {
	if r.opt.Dist == nil {
		return 0
	}
	return r.opt.Dist.Rank
}

// checkDist refuses what data-parallel training does not support yet, in one
// line naming the setting.
func checkDist(cfg Config, g *dist.Group) error {
	if g == nil {
		return nil
	}
	switch {
	case cfg.BatchSize%g.World != 0:
		return bad("batch_size", "%d does not divide over %d processes (-nproc / the world size): each rank takes "+
			"an equal share of every batch", cfg.BatchSize, g.World)
	}
	return nil
}

// syncRanks makes every rank start from rank 0's weights (parameters and
// buffers), optimiser moments and progress.
func (r *runner) syncRanks() error {
	g := r.opt.Dist
	if g == nil {
		return nil
	}
	vars := r.m.VS.Variables()
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var xs []*ts.Tensor
	for _, n := range names {
		v := vars[n]
		xs = append(xs, &v)
	}
	xs = append(append(xs, r.adam.M...), r.adam.V...)
	tuneSteps := -1.0 // rank 0 resumed inside fine-tuning: its backbone optimiser's steps
	if r.tuneAdam != nil {
		tuneSteps = float64(r.tuneAdam.Steps)
	}
	st := []float64{float64(r.st.Epoch), float64(r.st.Batch), float64(r.st.Step), float64(r.adam.Steps),
		r.st.Best, float64(r.st.BestEpoch), float64(r.st.SinceBest), tuneSteps}
	stT := ts.MustOfSlice(st)
	defer stT.MustDrop()
	var err error
	torch.NoGrad(func() { err = g.Broadcast(append(xs, stT), 0) })
	if err != nil {
		return err
	}
	got := torch.Float64s(stT)
	r.st.Epoch, r.st.Batch, r.st.Step, r.adam.Steps = int(got[0]), int(got[1]), int64(got[2]), int(got[3])
	r.st.Best, r.st.BestEpoch, r.st.SinceBest = got[4], int(got[5]), int(got[6])
	if got[7] < 0 {
		return nil
	}
	if r.tuneAdam == nil {
		if err := r.startTuning(); err != nil {
			return err
		}
	}
	r.tuneAdam.Steps = int(got[7])
	torch.NoGrad(func() { err = g.Broadcast(append(append([]*ts.Tensor{}, r.tuneAdam.M...), r.tuneAdam.V...), 0) })
	return err
}

// shard is this rank's part of a global batch, with the weights of its
// cross-entropy (its share of the batch's target tokens) and of its attention
// penalty (its share of the images), and the place in the batch of its first
// image. A rank whose share is empty (a last batch smaller than the world)
// runs the batch's first image with weight 0.
func (r *runner) shard(b batch) (batch, int, float64, float64) {
	g := r.opt.Dist
	lo, hi := dist.Shard(b.n, g.Rank, g.World)
	wCE, wPen := 1.0, 0.0
	if hi == lo {
		lo, hi, wCE = 0, 1, 0
	} else {
		wPen = float64(hi-lo) / float64(b.n)
	}
	targets := func(lo, hi int) int {
		n := 0
		for i := lo * b.T; i < hi*b.T; i++ {
			if i%b.T != 0 && b.tokens[i] != data.PAD {
				n++
			}
		}
		return n
	}
	wCE *= float64(targets(lo, hi)) / float64(max(1, targets(0, b.n)))
	per := len(b.x) / b.n
	s := batch{index: b.index, n: hi - lo, examples: b.examples[lo:hi], x: b.x[lo*per : hi*per],
		shape: append([]int64{int64(hi - lo)}, b.shape[1:]...), tokens: b.tokens[lo*b.T : hi*b.T], T: b.T}
	return s, lo, wCE, wPen
}

// shardLoss is this rank's weighted part of the batch's loss: summed over
// the ranks, the one-process loss of the whole batch.
func shardLoss(logits, alphas, tok *ts.Tensor, alphaC, wCE, wPen float64) *ts.Tensor {
	loss := model.Loss(logits, tok).MustMulScalar(ts.FloatScalar(wCE), true)
	if alphas == nil || alphaC == 0 {
		return loss
	}
	pen := model.AttentionPenalty(alphas, tok).MustMulScalar(ts.FloatScalar(alphaC*wPen), true)
	out := loss.MustAdd(pen, true)
	pen.MustDrop()
	return out
}

// backward runs the loss's backward pass and returns the batch's loss: in a
// data-parallel run through PyTorch DDP's reducer, which sums each bucket of
// gradients over the ranks while backward produces the rest, with the shards'
// losses summed after.
func (r *runner) backward(loss *ts.Tensor, lv float64) (float64, error) {
	g := r.opt.Dist
	if g == nil {
		loss.MustBackward()
		return lv, nil
	}
	params := r.adam.Params
	if r.tuneAdam != nil {
		params = append(append([]*ts.Tensor{}, params...), r.tuneAdam.Params...)
	}
	if r.red == nil || r.redN != len(params) { // the first step, or fine-tuning has begun
		r.red.Close()
		red, err := g.NewReducer(params, dist.DDPBucketBytes, dist.DDPFirstBucketBytes)
		if err != nil {
			return 0, err
		}
		r.red, r.redN = red, len(params)
	}
	if err := r.red.Backward(loss); err != nil {
		return 0, err
	}
	return g.Sum(lv)
}

// rankScratch gives a rank other than 0 a scratch run folder (removed by
// the returned function).
func rankScratch(rank int) (string, func(), error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("captiongo-rank%d-", rank))
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// mine reports whether batch i of an evaluation is this rank's to compute.
func (r *runner) mine(i int) bool {
	g := r.opt.Dist
	return g == nil || i%g.World == g.Rank
}

// sumOverRanks replaces each value by its sum over the ranks.
func (r *runner) sumOverRanks(xs ...*float64) error {
	if r.opt.Dist == nil {
		return nil
	}
	vals := make([]float64, len(xs))
	for i, x := range xs {
		vals[i] = *x
	}
	t := ts.MustOfSlice(vals)
	defer t.MustDrop()
	if err := r.opt.Dist.AllReduce([]*ts.Tensor{t}, false); err != nil {
		return err
	}
	for i, v := range torch.Float64s(t) {
		*xs[i] = v
	}
	return nil
}

// decodeSharded is decode with its batches spread over the ranks and the
// captions gathered on every rank.
func (r *runner) decodeSharded(ex []data.Example) ([]string, error) {
	if r.opt.Dist == nil {
		return r.decode(ex)
	}
	out := make([]string, len(ex))
	for i, lo := 0, 0; lo < len(ex); i, lo = i+1, lo+decodeBatch {
		if !r.mine(i) {
			continue
		}
		hi := min(lo+decodeBatch, len(ex))
		hs, err := r.decode(ex[lo:hi])
		if err != nil {
			return nil, err
		}
		copy(out[lo:hi], hs)
	}
	return out, r.gatherStrings(out)
}

// gatherStrings fills every rank's empty entries with the other ranks'
// (each entry is set on one rank): the bytes go through one sum.
func (r *runner) gatherStrings(s []string) error {
	width := 0
	for _, x := range s {
		width = max(width, len(x))
	}
	w := float64(width)
	if err := r.sumOverRanks(&w); err != nil { // a width every rank agrees on: the sum of theirs
		return err
	}
	width = int(w)
	buf := make([]int32, len(s)*width)
	for i, x := range s {
		for j := 0; j < len(x); j++ {
			buf[i*width+j] = int32(x[j])
		}
	}
	t := ts.MustOfSlice(buf)
	defer t.MustDrop()
	if err := r.opt.Dist.AllReduce([]*ts.Tensor{t}, false); err != nil {
		return err
	}
	all := torch.Int64s(t)
	for i := range s {
		b := make([]byte, 0, width)
		for _, c := range all[i*width : (i+1)*width] {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		s[i] = string(b)
	}
	return nil
}
