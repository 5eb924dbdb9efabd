package model

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// WordLogit is the function explanations attribute: for images x (N x 3 x H
// x W) and one caption (token ids <SOS> ... <EOS>), the logit of the caption's
// word t+1 at decoding step t, teacher-forced on the caption's prefix, the
// model in eval mode (no dropout, BatchNorm running statistics). It keeps the
// graph to x when grad mode is on. Returns N values.
func (m *Captioner) WordLogit(x *ts.Tensor, caption []int64, t int) *ts.Tensor {
	f := m.Backbone.MapAt(x, m.Cfg.Layer(), false)
	defer f.MustDrop()
	return m.wordLogitFromMap(f, caption, t)
}

// LegendreGauss returns the nodes in [0, 1] and weights (summing to 1) of
// n-point Gauss-Legendre quadrature, in ascending order: Captum's default
// "gausslegendre" integral approximation for Integrated Gradients.
func LegendreGauss(n int) (alphas, weights []float64) {
	alphas, weights = make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		x := math.Cos(math.Pi * (float64(i) + 0.75) / (float64(n) + 0.5))
		var dp float64
		for it := 0; it < 100; it++ {
			p0, p1 := 1.0, x
			for k := 2; k <= n; k++ {
				p0, p1 = p1, ((2*float64(k)-1)*x*p1-(float64(k)-1)*p0)/float64(k)
			}
			if n == 1 {
				p0, p1 = 1, x
			}
			dp = float64(n) * (x*p1 - p0) / (x*x - 1)
			dx := p1 / dp
			x -= dx
			if math.Abs(dx) < 1e-15 {
				break
			}
		}
		// Roots come out descending; store ascending.
		j := n - 1 - i
		alphas[j] = 0.5 * (x + 1)
		weights[j] = 0.5 * 2 / ((1 - x*x) * dp * dp)
	}
	return alphas, weights
}

// Attribution is one word's explanation: a value per input pixel and
// channel (3 x H x W, row-major), with the numbers of the completeness check
// for Integrated Gradients.
type Attribution struct {
	Values        []float32
	FX, FBaseline float64 // the word's logit on the image and on the baseline
	Sum           float64 // sum of Values (IG: close to FX - FBaseline)
}

// IntegratedGradients attributes WordLogit(x, caption, t) to the pixels of
// one image x (1 x 3 x H x W) against a baseline of the same shape:
// (x - baseline) times the path integral of the gradient, by n-point
// Gauss-Legendre quadrature, the n scaled images run as one batch.
func (m *Captioner) IntegratedGradients(x, baseline *ts.Tensor, caption []int64, t, n int) (Attribution, error) {
	if n < 1 {
		return Attribution{}, fmt.Errorf("integrated gradients: %d steps", n)
	}
	alphas, weights := LegendreGauss(n)
	diff := x.MustSub(baseline, false)
	var scaled []*ts.Tensor
	for _, a := range alphas {
		s := diff.MustMulScalar(ts.FloatScalar(a), false)
		scaled = append(scaled, s.MustAdd(baseline, true))
	}
	batch := ts.MustCat(scaled, 0)
	for _, s := range scaled {
		s.MustDrop()
	}
	in := batch.MustSetRequiresGrad(true, true)
	var attr Attribution
	var err error
	// Grad on; the previous mode comes back on return.
	defer torch.SetGradEnabled(torch.SetGradEnabled(true))
	out := m.WordLogit(in, caption, t) // n values
	w := torch.FromFloat32s(f32s(weights), []int64{int64(n)}, m.device)
	wsum := out.MustMul(w, false).MustSum(gotch.Float, true)
	wsum.MustBackward()
	wsum.MustDrop()
	w.MustDrop()
	out.MustDrop()
	g := in.MustGrad(false)
	if !g.MustDefined() {
		err = fmt.Errorf("integrated gradients: no gradient reached the input")
	} else {
		// Weighted gradients are already summed through the backward pass of
		// sum_k w_k f(x_k): d/dx_k = w_k f'(x_k). Sum over the n copies.
		total := g.MustSumDimIntlist([]int64{0}, true, gotch.Float, false)
		a := total.MustMul(diff, true)
		attr.Values = torch.Float32s(a)
		a.MustDrop()
		for _, v := range attr.Values {
			attr.Sum += float64(v)
		}
	}
	g.MustDrop()
	in.MustDrop()
	diff.MustDrop()
	if err != nil {
		return attr, err
	}
	torch.NoGrad(func() {
		fx := m.WordLogit(x, caption, t)
		fb := m.WordLogit(baseline, caption, t)
		attr.FX, attr.FBaseline = torch.Item(fx), torch.Item(fb)
		fx.MustDrop()
		fb.MustDrop()
	})
	return attr, nil
}

// Saliency is the absolute gradient of WordLogit at x (1 x 3 x H x W), as
// Captum's Saliency with abs=True.
func (m *Captioner) Saliency(x *ts.Tensor, caption []int64, t int) (Attribution, error) {
	in := x.MustDetach(false).MustSetRequiresGrad(true, true)
	defer in.MustDrop()
	// Grad on; the previous mode comes back on return.
	defer torch.SetGradEnabled(torch.SetGradEnabled(true))
	out := m.WordLogit(in, caption, t)
	attr := Attribution{FX: torch.Item(out)}
	s := out.MustSum(gotch.Float, true)
	s.MustBackward()
	s.MustDrop()
	g := in.MustGrad(false)
	defer g.MustDrop()
	if !g.MustDefined() {
		return attr, fmt.Errorf("saliency: no gradient reached the input")
	}
	a := g.MustAbs(false)
	attr.Values = torch.Float32s(a)
	a.MustDrop()
	for _, v := range attr.Values {
		attr.Sum += float64(v)
	}
	return attr, nil
}

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// wordLogitFromMap is WordLogit from the backbone map onward (f: N x C x h x
// w; not consumed).
func (m *Captioner) wordLogitFromMap(f *ts.Tensor, caption []int64, t int) *ts.Tensor {
	N := f.MustSize()[0]
	rep := make([]int64, 0, int(N)*len(caption))
	for i := int64(0); i < N; i++ {
		rep = append(rep, caption...)
	}
	tok := torch.FromInt64s(rep, []int64{N, int64(len(caption))}, m.device)
	defer tok.MustDrop()
	var feat *ts.Tensor
	if m.dec.rows() {
		feat = MapRows(f, false)
	} else {
		feat = PoolMap(f, false)
	}
	logits, alphas := m.dec.teacher(feat, tok, false, nil)
	feat.MustDrop()
	if alphas != nil {
		alphas.MustDrop()
	}
	step := logits.MustSelect(0, int64(t), true)
	return step.MustSelect(1, caption[t+1], true)
}

// GradCAM is Grad-CAM (Selvaraju et al. 2017) of WordLogit on the feature
// layer the decoder reads, for one image x (1 x 3 x H x W): relu of the map's
// channels weighted by their mean gradient, h x w values (row-major), as
// Captum's LayerGradCAM. Upsample it over the picture to show it.
func (m *Captioner) GradCAM(x *ts.Tensor, caption []int64, t int) ([]float32, int, error) {
	var f *ts.Tensor
	unfolded(func() { torch.NoGrad(func() { f = m.Backbone.MapAt(x, m.Cfg.Layer(), false) }) })
	a := f.MustSetRequiresGrad(true, true)
	defer a.MustDrop()
	// Grad on; the previous mode comes back on return.
	defer torch.SetGradEnabled(torch.SetGradEnabled(true))
	y := m.wordLogitFromMap(a, caption, t)
	s := y.MustSum(gotch.Float, true)
	s.MustBackward()
	s.MustDrop()
	g := a.MustGrad(false)
	defer g.MustDrop()
	if !g.MustDefined() {
		return nil, 0, fmt.Errorf("grad-cam: no gradient reached the feature map")
	}
	var cam []float32
	var side int
	torch.NoGrad(func() {
		w := g.MustMeanDim([]int64{2, 3}, true, gotch.Float, false) // 1 x C x 1 x 1
		c := a.MustMul(w, false).MustSumDimIntlist([]int64{1}, false, gotch.Float, true).MustRelu(true)
		w.MustDrop()
		side = int(c.MustSize()[2])
		cam = torch.Float32s(c)
		c.MustDrop()
	})
	return cam, side, nil
}

// Occlusion slides a window of the baseline's values (side window, step
// stride) over one image x (1 x 3 x H x W) and gives every pixel the mean
// drop of the word's logit, f(x) - f(occluded), over the windows covering it
// (Captum's Occlusion with the same window on all channels). The occluded
// images run in batches of batch.
func (m *Captioner) Occlusion(
	x, baseline *ts.Tensor,
	caption []int64,
	t, window, stride, batch int,
) (Attribution, error) {
	sz := x.MustSize()
	H, W := int(sz[2]), int(sz[3])
	if window < 1 || stride < 1 || window > H || window > W {
		return Attribution{}, fmt.Errorf("occlusion: window %d, stride %d on a %dx%d image", window, stride, H, W)
	}
	// As Captum: ceil((side - window) / stride) + 1 positions a side, the last
	// window clipped at the edge, so every pixel is covered.
	positions := func(side int) []int {
		n := (side-window+stride-1)/stride + 1
		out := make([]int, n)
		for i := range out {
			out[i] = i * stride
		}
		return out
	}
	var starts [][2]int
	for _, y := range positions(H) {
		for _, xx := range positions(W) {
			starts = append(starts, [2]int{y, xx})
		}
	}
	img := torch.Float32s(x)
	base := torch.Float32s(baseline)
	sum := make([]float64, H*W)
	cnt := make([]float64, H*W)
	var attr Attribution
	unfolded(func() {
		torch.NoGrad(func() {
			fx := m.WordLogit(x, caption, t)
			attr.FX = torch.Item(fx)
			fx.MustDrop()
			for lo := 0; lo < len(starts); lo += batch {
				part := starts[lo:min(lo+batch, len(starts))]
				buf := make([]float32, 0, len(part)*3*H*W)
				for _, s := range part {
					one := append([]float32(nil), img...)
					for c := 0; c < 3; c++ {
						for y := s[0]; y < min(H, s[0]+window); y++ {
							for xx := s[1]; xx < min(W, s[1]+window); xx++ {
								k := c*H*W + y*W + xx
								one[k] = base[k]
							}
						}
					}
					buf = append(buf, one...)
				}
				xb := torch.FromFloat32s(buf, []int64{int64(len(part)), 3, int64(H), int64(W)}, m.device)
				out := m.WordLogit(xb, caption, t)
				vals := torch.Float32s(out)
				out.MustDrop()
				xb.MustDrop()
				for i, s := range part {
					d := attr.FX - float64(vals[i])
					for y := s[0]; y < min(H, s[0]+window); y++ {
						for xx := s[1]; xx < min(W, s[1]+window); xx++ {
							sum[y*W+xx] += d
							cnt[y*W+xx]++
						}
					}
				}
			}
		})
	})
	attr.Values = make([]float32, 3*H*W)
	for p := range sum {
		v := 0.0
		if cnt[p] > 0 {
			v = sum[p] / cnt[p]
		}
		for c := 0; c < 3; c++ {
			attr.Values[c*H*W+p] = float32(v)
		}
		attr.Sum += 3 * v
	}
	return attr, nil
}
