package train

import (
	"context"
	"fmt"

	"github.com/sugarme/gotch"
	ts "github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// A source hands the model its input for images: rows of the feature cache
// (the frozen backbone already run), or pixels the backbone runs on.
// Training, validation, the per-epoch metrics and the TensorBoard samples all
// read images through one, so none of them branches on the cache.
type source interface {
	// epoch streams one epoch's batches of the items of ex, from batch start
	// on, and says how many batches the epoch has.
	epoch(ctx context.Context, ex []data.Example, items []data.Item, epoch, start int, shuffle bool,
	) (<-chan batch, int, error)
	// forward computes the logits for a batch and, for the attention
	// decoder, its weights (else nil).
	forward(b batch, train bool, ss *model.ScheduledSampling) (logits, alphas, tokens *ts.Tensor)
	// features are the decoder's inputs for images (N x D, or N x P x D for
	// the attention decoder), computed without gradients.
	features(ex []data.Example) (*ts.Tensor, error)
	// batchFeatures are features for a batch's images, without gradients.
	batchFeatures(b batch) *ts.Tensor
	// name says what the source reads, for the log.
	name() string
}

// batch is an epoch's batch in plain Go slices (made off the torch thread).
type batch struct {
	index    int
	n        int
	examples []int     // each row's example (index into the epoch's examples)
	x        []float32 // the input: cached features or pixels
	shape    []int64   // x's tensor shape
	tokens   []int64   // n x T
	T        int
	err      error // the batch could not be read (its consumer stops with this error)
}

// tensors turns a batch into its input and token tensors on device.
func (b batch) tensors(device gotch.Device) (in, tok *ts.Tensor) {
	return torch.FromFloat32s(b.x, b.shape, device), torch.FromInt64s(b.tokens, []int64{int64(b.n), int64(b.T)}, device)
}

// imageSource decodes and transforms images; the model's backbone runs on
// them in every step.
type imageSource struct {
	m       *model.Captioner
	vocab   *data.Vocab
	tfTrain data.Transform // training batches (a random crop when the config asks)
	tfEval  data.Transform // everything else
	cfg     data.LoaderConfig
	device  gotch.Device
	say     func(format string, args ...any)
}

func (s *imageSource) name() string { return "images (the backbone runs in every step)" }

func (s *imageSource) epoch(
	ctx context.Context, ex []data.Example, items []data.Item, epoch, start int, shuffle bool,
) (<-chan batch, int, error) {
	tf := s.tfEval
	if shuffle {
		tf = s.tfTrain
	}
	lc := s.cfg
	lc.Shuffle = shuffle
	l, err := data.NewLoader(ex, items, s.vocab, tf, lc)
	if err != nil {
		return nil, 0, err
	}
	out := make(chan batch)
	go func() {
		defer close(out)
		for b := range l.Epoch(ctx, epoch, start) {
			side := int64(b.Side)
			bb := batch{index: b.Index, n: b.Size(), x: b.Images, shape: []int64{int64(b.Size()), 3, side, side},
				tokens: b.Tokens, T: b.T, examples: make([]int, b.Size())}
			for i, it := range b.Items {
				bb.examples[i] = it.Example
			}
			select {
			case out <- bb:
			case <-ctx.Done():
				return
			}
		}
		if msg := l.SkipSummary(); msg != "" {
			s.say("note: %s", msg)
		}
	}()
	return out, l.NumBatches(), nil
}

func (s *imageSource) forward(b batch, train bool, ss *model.ScheduledSampling) (logits, alphas, tokens *ts.Tensor) {
	in, tok := b.tensors(s.device)
	defer in.MustDrop()
	f := s.m.Features(in, train)
	defer f.MustDrop()
	logits, alphas = s.m.DecodeFeaturesSS(f, tok, train, ss)
	return logits, alphas, tok
}

func (s *imageSource) batchFeatures(b batch) *ts.Tensor {
	in := torch.FromFloat32s(b.x, b.shape, s.device)
	defer in.MustDrop()
	var f *ts.Tensor
	torch.NoGrad(func() { f = s.m.Features(in, false) })
	return f
}

func (s *imageSource) features(ex []data.Example) (*ts.Tensor, error) {
	side := s.tfEval.OutSide()
	per := 3 * side * side
	buf := make([]float32, len(ex)*per)
	for i, e := range ex {
		img, err := data.DecodeImage(e.Path)
		if err != nil {
			return nil, err
		}
		if err := s.tfEval.Apply(img, nil, buf[i*per:(i+1)*per]); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	in := torch.FromFloat32s(buf, []int64{int64(len(ex)), 3, int64(side), int64(side)}, s.device)
	defer in.MustDrop()
	var f *ts.Tensor
	torch.NoGrad(func() { f = s.m.Features(in, false) })
	return f, nil
}

// cacheSource reads the feature cache; images it does not hold (the test
// split) go through images instead.
type cacheSource struct {
	cache  *FeatureCache
	m      *model.Captioner
	vocab  *data.Vocab
	seed   uint64
	bs     int
	device gotch.Device
	images *imageSource
}

func (s *cacheSource) name() string { return "the feature cache " + s.cache.Path }

func (s *cacheSource) epoch(
	ctx context.Context, ex []data.Example, items []data.Item, epoch, start int, shuffle bool,
) (<-chan batch, int, error) {
	if shuffle {
		data.ShuffleItems(items, s.seed, epoch)
	}
	nb := (len(items) + s.bs - 1) / s.bs
	enc := make([][]int, len(items))
	out := make(chan batch)
	go func() {
		defer close(out)
		for b := start; b < nb; b++ {
			lo, hi := b*s.bs, min((b+1)*s.bs, len(items))
			x := make([]float32, 0, (hi-lo)*s.cache.dim)
			exs := make([]int, 0, hi-lo)
			var err error
			for i := lo; i < hi && err == nil; i++ {
				it := items[i]
				exs = append(exs, it.Example)
				x, err = s.cache.AppendRow(x, ex[it.Example].Path)
				if enc[i] == nil {
					enc[i] = s.vocab.Encode(ex[it.Example].Captions[it.Caption])
				}
			}
			bb := batch{index: b, err: err}
			if err == nil {
				toks, T, _ := data.PadTokens(enc[lo:hi])
				bb = batch{index: b, n: hi - lo, examples: exs, x: x, shape: s.cache.Shape(hi - lo), tokens: toks, T: T}
			}
			select {
			case out <- bb:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out, nb, nil
}

func (s *cacheSource) forward(b batch, train bool, ss *model.ScheduledSampling) (logits, alphas, tokens *ts.Tensor) {
	in, tok := b.tensors(s.device)
	defer in.MustDrop()
	logits, alphas = s.m.DecodeFeaturesSS(in, tok, train, ss)
	return logits, alphas, tok
}

func (s *cacheSource) batchFeatures(b batch) *ts.Tensor {
	return torch.FromFloat32s(b.x, b.shape, s.device)
}

func (s *cacheSource) features(ex []data.Example) (*ts.Tensor, error) {
	x := make([]float32, 0, len(ex)*s.cache.dim)
	for _, e := range ex {
		if !s.cache.Has(e.Path) {
			return s.images.features(ex)
		}
		var err error
		if x, err = s.cache.AppendRow(x, e.Path); err != nil {
			return nil, err
		}
	}
	return torch.FromFloat32s(x, s.cache.Shape(len(ex)), s.device), nil
}
