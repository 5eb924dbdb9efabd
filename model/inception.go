// Package model is the captioner: a torchvision-compatible Inception-v3
// encoder (same parameter and buffer names, shapes and numerics, loading
// torchvision's state_dict files; or the FID variant of Google's weights) and a
// decoder behind one interface (decoder.go): the baseline's LSTM with its fc
// head (lstm.go) or Show, Attend and Tell (attention.go), with greedy and beam
// decoding, Adam, and attributions. Every module is built on an nn.Path whose
// sub-paths give the checkpoint names; forward passes take a train flag.
package model

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// bnEps is torchvision's BatchNorm eps for Inception-v3.
const bnEps = 0.001

// basicConv is torchvision's BasicConv2d: conv (no bias) + BatchNorm(eps 0.001) + ReLU.
type basicConv struct {
	w                         *ts.Tensor
	bnW, bnB, mean, vari, nbt *ts.Tensor
	stride, pad               []int64
	// fold is the conv's weight and bias with the BatchNorm folded in (folded).
	// A train-mode BatchNorm updates its running statistics inside the kernel
	// without a version bump, so forward also drops it on every train-mode call.
	fold derived
}

// useFolding turns the eval-mode BatchNorm folding on (the default); see
// unfolded.
var useFolding = true

// unfolded runs fn with the backbone's BatchNorm layers unfolded, op for op as
// torchvision runs them. Attributions need it: Occlusion and Grad-CAM take
// differences of outputs, which turn the folded layers' float32 rounding
// (relative 1e-6) into visible differences from Captum's (up to 0.5% on a
// random backbone).
func unfolded(fn func()) {
	prev := useFolding
	useFolding = false
	defer func() { useFolding = prev }()
	fn()
}

// folded returns the conv weight and bias with the eval-mode BatchNorm folded
// in (torch.FoldBatchNorm), computed once and reused until a weight or a
// running statistic changes; nil if folding fails.
func (c *basicConv) folded() (w, b *ts.Tensor) {
	wb := c.fold.get([]*ts.Tensor{c.w, c.bnW, c.bnB, c.mean, c.vari}, func() ([]*ts.Tensor, error) {
		w, b, err := torch.FoldBatchNorm(c.w, c.bnW, c.bnB, c.mean, c.vari, bnEps)
		return []*ts.Tensor{w, b}, err
	})
	if wb == nil {
		return nil, nil
	}
	return wb[0], wb[1]
}

// trainability says which of a conv layer's tensors train: all of them
// (fine-tuning), or none; the FID backbone's BatchNorm has no scale, so its
// scale stays 1 even when the rest trains.
type trainability struct{ all, scale bool }

// trains reports whether a basic conv's tensor (leaf: "conv.weight",
// "bn.weight", ...) trains under tr: the conv weight and the BatchNorm shift
// with all, the BatchNorm scale with scale; the running statistics never.
func (tr trainability) trains(leaf string) bool {
	switch leaf {
	case "conv.weight", "bn.bias":
		return tr.all
	case "bn.weight":
		return tr.scale
	}
	return false
}

func newBasicConv(p *nn.Path, in, out, kh, kw, sh, sw, ph, pw int64, tr trainability) *basicConv {
	// gotch's Path.Sub appends to a shared slice, so a sibling created later
	// can rename an earlier one's pending path: each sub-path is used at once.
	// He (Kaiming) normal init, std sqrt(2 / fan_in): keeps activations at the
	// same scale through 94 conv + ReLU layers, so that a randomly initialised
	// backbone (no pretrained weights at hand) still gives informative features.
	fanIn := float64(in * kh * kw)
	std := sqrt(2 / fanIn)
	dev := p.Device()
	c := &basicConv{stride: []int64{sh, sw}, pad: []int64{ph, pw}}
	c.w = p.Sub("conv").MustAdd("weight", nn.NewRandnInit(0, std).InitTensor([]int64{out, in, kh, kw}, dev),
		tr.trains("conv.weight"))
	buf := []nn.AddOpt{nn.WithVarType("buffer"), nn.WithPersistent(true)}
	c.bnW = p.Sub("bn").MustAdd("weight", ts.MustOnes([]int64{out}, gotch.Float, dev), tr.trains("bn.weight"))
	c.bnB = p.Sub("bn").MustAdd("bias", ts.MustZeros([]int64{out}, gotch.Float, dev), tr.trains("bn.bias"))
	c.mean = p.Sub("bn").MustAdd("running_mean", ts.MustZeros([]int64{out}, gotch.Float, dev), false, buf...)
	c.vari = p.Sub("bn").MustAdd("running_var", ts.MustOnes([]int64{out}, gotch.Float, dev), false, buf...)
	// 0-d int64 like PyTorch's (gotch cannot make a 0-d tensor from an empty shape).
	c.nbt = p.Sub("bn").
		MustAdd("num_batches_tracked", ts.MustOfSlice([]int64{0}).MustSqueeze(true).MustTo(dev, true), false, buf...)
	return c
}

func conv1(p *nn.Path, in, out int64, tr trainability) *basicConv {
	return newBasicConv(p, in, out, 1, 1, 1, 1, 0, 0, tr)
}

// forward: train means BatchNorm uses batch statistics and updates its running ones.
// In eval mode without gradient (feature extraction, the frozen backbone of
// a training step, captioning) the BatchNorm is folded into the conv: one conv
// with a bias instead of a conv and a pass of BatchNorm over its output.
// Float32 rounding then differs from torchvision's conv -> BN at the 1e-6
// level, so with gradient (fine-tuning, attributions) the layers run unfolded
// and match PyTorch op for op.
func (c *basicConv) forward(x *ts.Tensor, train bool) *ts.Tensor {
	if !train && useFolding && !torch.GradEnabled() {
		if w, b := c.folded(); w != nil {
			y := ts.MustConv2d(x, w, b, c.stride, c.pad, []int64{1, 1}, 1)
			torch.ReluInPlace(y)
			return y
		}
	}
	if train { // the running statistics are about to change
		c.fold.drop()
	}
	none := ts.NewTensor() // "no bias"; an undefined tensor, dropped at once
	y := ts.MustConv2d(x, c.w, none, c.stride, c.pad, []int64{1, 1}, 1)
	none.MustDrop()
	z := ts.MustBatchNorm(y, c.bnW, c.bnB, c.mean, c.vari, train, 0.1, bnEps, true)
	y.MustDrop()
	if train {
		NoGradAdd1(c.nbt)
	}
	torch.ReluInPlace(z)
	return z
}

// seq runs convs one after another, dropping intermediates.
func seq(x *ts.Tensor, train bool, cs ...*basicConv) *ts.Tensor {
	y := cs[0].forward(x, train)
	for _, c := range cs[1:] {
		z := c.forward(y, train)
		y.MustDrop()
		y = z
	}
	return y
}

func catDrop(xs []*ts.Tensor) *ts.Tensor {
	y := ts.MustCat(xs, 1)
	for _, x := range xs {
		x.MustDrop()
	}
	return y
}

// avgPool3 is the pool branch's 3 x 3 average (stride 1, padding 1). torchvision
// counts the zero padding (count_include_pad=True); the FID backbone does not.
func avgPool3(x *ts.Tensor, v backboneVariant) *ts.Tensor {
	return x.MustAvgPool2d([]int64{3, 3}, []int64{1, 1}, []int64{1, 1}, false, v.poolCountsPad, nil, false)
}

// maxPool3s1 is the FID backbone's pool branch in Mixed_7c: a 3 x 3 max (stride 1, padding 1).
func maxPool3s1(x *ts.Tensor) *ts.Tensor {
	return x.MustMaxPool2d([]int64{3, 3}, []int64{1, 1}, []int64{1, 1}, []int64{1, 1}, false, false)
}

func maxPool3s2(x *ts.Tensor) *ts.Tensor {
	return x.MustMaxPool2d([]int64{3, 3}, []int64{2, 2}, []int64{0, 0}, []int64{1, 1}, false, false)
}

type inceptionA struct {
	b1, b5_1, b5_2, b3_1, b3_2, b3_3, pool *basicConv
	v                                      backboneVariant
}

func newInceptionA(p *nn.Path, in, poolFeatures int64, tr trainability, v backboneVariant) *inceptionA {
	return &inceptionA{v: v,
		b1:   conv1(p.Sub("branch1x1"), in, 64, tr),
		b5_1: conv1(p.Sub("branch5x5_1"), in, 48, tr),
		b5_2: newBasicConv(p.Sub("branch5x5_2"), 48, 64, 5, 5, 1, 1, 2, 2, tr),
		b3_1: conv1(p.Sub("branch3x3dbl_1"), in, 64, tr),
		b3_2: newBasicConv(p.Sub("branch3x3dbl_2"), 64, 96, 3, 3, 1, 1, 1, 1, tr),
		b3_3: newBasicConv(p.Sub("branch3x3dbl_3"), 96, 96, 3, 3, 1, 1, 1, 1, tr),
		pool: conv1(p.Sub("branch_pool"), in, poolFeatures, tr),
	}
}

func (m *inceptionA) forward(x *ts.Tensor, t bool) *ts.Tensor {
	pool := avgPool3(x, m.v)
	bp := m.pool.forward(pool, t)
	pool.MustDrop()
	return catDrop([]*ts.Tensor{m.b1.forward(x, t), seq(x, t, m.b5_1, m.b5_2), seq(x, t, m.b3_1, m.b3_2, m.b3_3), bp})
}

type inceptionB struct{ b3, d1, d2, d3 *basicConv }

func newInceptionB(p *nn.Path, in int64, tr trainability) *inceptionB {
	return &inceptionB{
		b3: newBasicConv(p.Sub("branch3x3"), in, 384, 3, 3, 2, 2, 0, 0, tr),
		d1: conv1(p.Sub("branch3x3dbl_1"), in, 64, tr),
		d2: newBasicConv(p.Sub("branch3x3dbl_2"), 64, 96, 3, 3, 1, 1, 1, 1, tr),
		d3: newBasicConv(p.Sub("branch3x3dbl_3"), 96, 96, 3, 3, 2, 2, 0, 0, tr),
	}
}

func (m *inceptionB) forward(x *ts.Tensor, t bool) *ts.Tensor {
	return catDrop([]*ts.Tensor{m.b3.forward(x, t), seq(x, t, m.d1, m.d2, m.d3), maxPool3s2(x)})
}

type inceptionC struct {
	b1, s1, s2, s3, d1, d2, d3, d4, d5, pool *basicConv
	v                                        backboneVariant
}

func newInceptionC(p *nn.Path, in, c7 int64, tr trainability, v backboneVariant) *inceptionC {
	row := func(name string, i, o int64) *basicConv { return newBasicConv(p.Sub(name), i, o, 1, 7, 1, 1, 0, 3, tr) }
	col := func(name string, i, o int64) *basicConv { return newBasicConv(p.Sub(name), i, o, 7, 1, 1, 1, 3, 0, tr) }
	return &inceptionC{v: v,
		b1: conv1(p.Sub("branch1x1"), in, 192, tr),
		s1: conv1(p.Sub("branch7x7_1"), in, c7, tr), s2: row("branch7x7_2", c7, c7), s3: col("branch7x7_3", c7, 192),
		d1: conv1(p.Sub("branch7x7dbl_1"), in, c7, tr),
		d2: col("branch7x7dbl_2", c7, c7), d3: row("branch7x7dbl_3", c7, c7),
		d4: col("branch7x7dbl_4", c7, c7), d5: row("branch7x7dbl_5", c7, 192),
		pool: conv1(p.Sub("branch_pool"), in, 192, tr),
	}
}

func (m *inceptionC) forward(x *ts.Tensor, t bool) *ts.Tensor {
	pool := avgPool3(x, m.v)
	bp := m.pool.forward(pool, t)
	pool.MustDrop()
	return catDrop(
		[]*ts.Tensor{m.b1.forward(x, t), seq(x, t, m.s1, m.s2, m.s3), seq(x, t, m.d1, m.d2, m.d3, m.d4, m.d5), bp},
	)
}

type inceptionD struct{ a1, a2, b1, b2, b3, b4 *basicConv }

func newInceptionD(p *nn.Path, in int64, tr trainability) *inceptionD {
	return &inceptionD{
		a1: conv1(p.Sub("branch3x3_1"), in, 192, tr),
		a2: newBasicConv(p.Sub("branch3x3_2"), 192, 320, 3, 3, 2, 2, 0, 0, tr),
		b1: conv1(p.Sub("branch7x7x3_1"), in, 192, tr),
		b2: newBasicConv(p.Sub("branch7x7x3_2"), 192, 192, 1, 7, 1, 1, 0, 3, tr),
		b3: newBasicConv(p.Sub("branch7x7x3_3"), 192, 192, 7, 1, 1, 1, 3, 0, tr),
		b4: newBasicConv(p.Sub("branch7x7x3_4"), 192, 192, 3, 3, 2, 2, 0, 0, tr),
	}
}

func (m *inceptionD) forward(x *ts.Tensor, t bool) *ts.Tensor {
	return catDrop([]*ts.Tensor{seq(x, t, m.a1, m.a2), seq(x, t, m.b1, m.b2, m.b3, m.b4), maxPool3s2(x)})
}

type inceptionE struct {
	b1, s1, s2a, s2b, d1, d2, d3a, d3b, pool *basicConv
	v                                        backboneVariant
	maxPool                                  bool // the FID backbone's Mixed_7c pools its pool branch by max
}

func newInceptionE(p *nn.Path, in int64, tr trainability, v backboneVariant, maxPool bool) *inceptionE {
	return &inceptionE{v: v, maxPool: maxPool,
		b1:   conv1(p.Sub("branch1x1"), in, 320, tr),
		s1:   conv1(p.Sub("branch3x3_1"), in, 384, tr),
		s2a:  newBasicConv(p.Sub("branch3x3_2a"), 384, 384, 1, 3, 1, 1, 0, 1, tr),
		s2b:  newBasicConv(p.Sub("branch3x3_2b"), 384, 384, 3, 1, 1, 1, 1, 0, tr),
		d1:   conv1(p.Sub("branch3x3dbl_1"), in, 448, tr),
		d2:   newBasicConv(p.Sub("branch3x3dbl_2"), 448, 384, 3, 3, 1, 1, 1, 1, tr),
		d3a:  newBasicConv(p.Sub("branch3x3dbl_3a"), 384, 384, 1, 3, 1, 1, 0, 1, tr),
		d3b:  newBasicConv(p.Sub("branch3x3dbl_3b"), 384, 384, 3, 1, 1, 1, 1, 0, tr),
		pool: conv1(p.Sub("branch_pool"), in, 192, tr),
	}
}

func (m *inceptionE) forward(x *ts.Tensor, t bool) *ts.Tensor {
	s := m.s1.forward(x, t)
	s3 := catDrop([]*ts.Tensor{m.s2a.forward(s, t), m.s2b.forward(s, t)})
	s.MustDrop()
	d := seq(x, t, m.d1, m.d2)
	d3 := catDrop([]*ts.Tensor{m.d3a.forward(d, t), m.d3b.forward(d, t)})
	d.MustDrop()
	var pool *ts.Tensor
	if m.maxPool {
		pool = maxPool3s1(x)
	} else {
		pool = avgPool3(x, m.v)
	}
	bp := m.pool.forward(pool, t)
	pool.MustDrop()
	return catDrop([]*ts.Tensor{m.b1.forward(x, t), s3, d3, bp})
}

// BackboneTorchvision is torchvision's Inception3 (inception_v3_google-*.pth).
const BackboneTorchvision BackboneKind = "torchvision"

func init() {
	registerBackbone(backboneVariant{kind: BackboneTorchvision, rank: 0, bnScale: true, poolCountsPad: true,
		read: func(_ string, tensors func() (map[string]*ts.Tensor, error)) (map[string]*ts.Tensor, bool, error) {
			m, err := tensors()
			return m, err == nil, err
		}})
}

// Inception is torchvision's Inception3 without AuxLogits and fc: its
// parameters and buffers sit under the path it is built on, with torchvision's
// names (Conv2d_1a_3x3.conv.weight, Mixed_7c.branch_pool.bn.running_var, ...).
// Kind picks the block semantics (the FID variant keeps torchvision's names).
type Inception struct {
	TransformInput          bool
	Kind                    BackboneKind
	c1a, c2a, c2b, c3b, c4a *basicConv
	m5b, m5c, m5d           *inceptionA
	m6a                     *inceptionB
	m6b, m6c, m6d, m6e      *inceptionC
	m7a                     *inceptionD
	m7b, m7c                *inceptionE
	// tuneFrom > 0: stages from this index on train (Tune); the rest is frozen.
	tuneFrom int
}

// NewInception builds torchvision's backbone on p; trainable=false freezes it
// (its tensors do not require grad).
func NewInception(p *nn.Path, transformInput, trainable bool) *Inception {
	return NewInceptionKind(p, BackboneTorchvision, transformInput, trainable)
}

// NewInceptionKind builds a backbone of the given kind on p.
func NewInceptionKind(p *nn.Path, kind BackboneKind, transformInput, trainable bool) *Inception {
	v := mustVariant(kind)
	kind = v.kind
	tr := trainability{all: trainable, scale: trainable && v.bnScale}
	return &Inception{
		TransformInput: transformInput,
		Kind:           kind,
		c1a:            newBasicConv(p.Sub("Conv2d_1a_3x3"), 3, 32, 3, 3, 2, 2, 0, 0, tr),
		c2a:            newBasicConv(p.Sub("Conv2d_2a_3x3"), 32, 32, 3, 3, 1, 1, 0, 0, tr),
		c2b:            newBasicConv(p.Sub("Conv2d_2b_3x3"), 32, 64, 3, 3, 1, 1, 1, 1, tr),
		c3b:            conv1(p.Sub("Conv2d_3b_1x1"), 64, 80, tr),
		c4a:            newBasicConv(p.Sub("Conv2d_4a_3x3"), 80, 192, 3, 3, 1, 1, 0, 0, tr),
		m5b:            newInceptionA(p.Sub("Mixed_5b"), 192, 32, tr, v),
		m5c:            newInceptionA(p.Sub("Mixed_5c"), 256, 64, tr, v),
		m5d:            newInceptionA(p.Sub("Mixed_5d"), 288, 64, tr, v),
		m6a:            newInceptionB(p.Sub("Mixed_6a"), 288, tr),
		m6b:            newInceptionC(p.Sub("Mixed_6b"), 768, 128, tr, v),
		m6c:            newInceptionC(p.Sub("Mixed_6c"), 768, 160, tr, v),
		m6d:            newInceptionC(p.Sub("Mixed_6d"), 768, 160, tr, v),
		m6e:            newInceptionC(p.Sub("Mixed_6e"), 768, 192, tr, v),
		m7a:            newInceptionD(p.Sub("Mixed_7a"), 768, tr),
		m7b:            newInceptionE(p.Sub("Mixed_7b"), 1280, tr, v, false),
		m7c:            newInceptionE(p.Sub("Mixed_7c"), 2048, tr, v, v.lastPoolMax),
	}
}

// transformInput is torchvision's _transform_input: ImageNet-normalised input
// re-mapped to the (x - 0.5) / 0.5 range Google's weights expect.
func transformInput(x *ts.Tensor) *ts.Tensor {
	mean := []float64{0.485, 0.456, 0.406}
	std := []float64{0.229, 0.224, 0.225}
	chs := make([]*ts.Tensor, 3)
	for c := 0; c < 3; c++ {
		xc := x.MustNarrow(1, int64(c), 1, false)
		chs[c] = xc.MustMulScalar(ts.FloatScalar(std[c]/0.5), true).
			MustAddScalar(ts.FloatScalar((mean[c]-0.5)/0.5), true)
	}
	return catDrop(chs)
}

// Map returns the Mixed_7c feature map (N x 2048 x h x w; 8 x 8 at 299 x 299).
// train puts BatchNorm in training mode (batch statistics, running ones updated).
func (m *Inception) Map(x *ts.Tensor, train bool) *ts.Tensor { return m.MapAt(x, Mixed7c, train) }

// Layer names a backbone layer whose map a decoder can read.
type Layer string

// The layers a decoder can read.
const (
	Mixed5d Layer = "Mixed_5d"
	Mixed6e Layer = "Mixed_6e"
	Mixed7c Layer = "Mixed_7c" // the baseline's, and the default
)

// Layers lists them, the default last.
var Layers = []Layer{Mixed5d, Mixed6e, Mixed7c}

// FeatureLayers are the maps a captioner can read, with their channel counts
// (and map sides at 299 px: Mixed_5d 35, Mixed_6e 17, Mixed_7c 8).
var FeatureLayers = map[Layer]int64{Mixed5d: 288, Mixed6e: 768, Mixed7c: 2048}

// MapAt runs the backbone up to a layer of FeatureLayers and returns its map;
// the layers after it are not run.
func (m *Inception) MapAt(x *ts.Tensor, layer Layer, train bool) *ts.Tensor {
	if _, ok := FeatureLayers[layer]; !ok {
		panic(fmt.Sprintf("inception: no feature layer %q", layer))
	}
	st := m.stages()
	last := 0
	for i, s := range st {
		if s.name == string(layer) {
			last = i
		}
	}
	if m.tuneFrom <= 0 || m.tuneFrom > last {
		return runStages(x, st[:last+1], train, false)
	}
	// Fine-tuning from stage tuneFrom: the frozen stages run without
	// gradient, the tuned ones with it; BatchNorm keeps its running
	// statistics in both (tuned blocks train their convs and BN shifts).
	var y *ts.Tensor
	torch.NoGrad(func() { y = runStages(x, st[:m.tuneFrom], false, false) })
	return runStages(y, st[m.tuneFrom:last+1], false, true)
}

// stage is one step of the backbone: the stem (the convolutions and pools
// before Mixed_5b) or an Inception block, named as torchvision names it.
type stage struct {
	name string
	f    func(*ts.Tensor, bool) *ts.Tensor
}

func (m *Inception) stages() []stage {
	return []stage{
		{"stem", m.stem},
		{"Mixed_5b", m.m5b.forward}, {"Mixed_5c", m.m5c.forward}, {"Mixed_5d", m.m5d.forward},
		{"Mixed_6a", m.m6a.forward}, {"Mixed_6b", m.m6b.forward}, {"Mixed_6c", m.m6c.forward},
		{"Mixed_6d", m.m6d.forward}, {"Mixed_6e", m.m6e.forward},
		{"Mixed_7a", m.m7a.forward}, {"Mixed_7b", m.m7b.forward}, {"Mixed_7c", m.m7c.forward},
	}
}

// runStages runs stages one after another; x is kept unless dropInput.
func runStages(x *ts.Tensor, st []stage, train, dropInput bool) *ts.Tensor {
	y := x
	for i, s := range st {
		z := s.f(y, train)
		if i > 0 || dropInput {
			y.MustDrop()
		}
		y = z
	}
	return y
}

// stem is Conv2d_1a_3x3 .. Conv2d_4a_3x3 with their max pools (and
// torchvision's transform_input when set).
func (m *Inception) stem(x *ts.Tensor, train bool) *ts.Tensor {
	in := x
	if m.TransformInput {
		in = transformInput(x)
	}
	y := seq(in, train, m.c1a, m.c2a, m.c2b)
	if in != x {
		in.MustDrop()
	}
	y = dropAfter(y, maxPool3s2(y))
	y = dropAfter(y, seq(y, train, m.c3b, m.c4a))
	return dropAfter(y, maxPool3s2(y))
}

// Pooled returns the global-average-pooled 2048-d feature (N x 2048).
func (m *Inception) Pooled(x *ts.Tensor, train bool) *ts.Tensor {
	f := m.Map(x, train)
	return PoolMap(f, true)
}

// PoolMap averages a N x C x h x w map to N x C.
func PoolMap(f *ts.Tensor, del bool) *ts.Tensor {
	return f.MustAdaptiveAvgPool2d([]int64{1, 1}, del).MustFlatten(1, -1, true)
}

func dropAfter(old, next *ts.Tensor) *ts.Tensor {
	old.MustDrop()
	return next
}
