package model

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// pyClip runs torch.nn.utils.clip_grad_norm_ on three gradients, one of them
// absent (a parameter without a gradient), at a max norm below the total (the
// gradients shrink) and above it (they stay), and saves the norms and the
// clipped gradients.
const pyClip = `
import sys, json, numpy as np, torch
d = sys.argv[1]
rng = np.random.default_rng(1)
shapes = [(7, 5), (13,), (3, 4, 2, 2)]
grads = [rng.standard_normal(s).astype(np.float32) * (i + 1) for i, s in enumerate(shapes)]
out = {}
for i, g in enumerate(grads):
    np.save(d + "/grad%d.npy" % i, g)
for name, mx in (("low", 2.5), ("high", 1000.0)):
    ps = [torch.zeros(s, requires_grad=True) for s in shapes] + [torch.zeros(3, requires_grad=True)]
    for p, g in zip(ps, grads):
        p.grad = torch.from_numpy(g.copy())
    out[name] = float(torch.nn.utils.clip_grad_norm_(ps, mx))
    for i, p in enumerate(ps[:3]):
        np.save(d + "/%s_g%d.npy" % (name, i), p.grad.numpy())
json.dump(out, open(d + "/ref.json", "w"))
`

// TestClipGradNormMatchesPyTorch: Adam.ClipGradNorm returns the total norm
// clip_grad_norm_ returns and leaves the gradients it leaves, both when it
// clips and when the norm is under the limit; a parameter without a gradient
// is skipped as in PyTorch.
func TestClipGradNormMatchesPyTorch(t *testing.T) {
	var ref map[string]float64
	dir := pythonReference(t, pyClip, &ref)
	run(t, func() {
		load := func(name string) *ts.Tensor {
			d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return torch.FromFloat32s(d, shape, gotch.CPU)
		}
		for _, c := range []struct {
			name string
			max  float64
		}{{"low", 2.5}, {"high", 1000}} {
			a := &Adam{}
			for i, s := range [][]int64{{7, 5}, {13}, {3, 4, 2, 2}, {3}} {
				p := ts.MustZeros(s, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
				a.Names = append(a.Names, fmt.Sprint(i))
				a.Params = append(a.Params, p)
			}
			var loss *ts.Tensor
			for i := 0; i < 3; i++ { // the fourth parameter gets no gradient
				g := load(fmt.Sprintf("grad%d.npy", i))
				s := a.Params[i].MustMul(g, false).MustSum(gotch.Float, true)
				g.MustDrop()
				if loss == nil {
					loss = s
				} else {
					loss = loss.MustAdd(s, true)
					s.MustDrop()
				}
			}
			loss.MustBackward()
			loss.MustDrop()
			norm := a.ClipGradNorm(c.max)
			if d := math.Abs(norm-ref[c.name]) / ref[c.name]; d > 1e-6 {
				t.Errorf("%s: total norm %.7g, clip_grad_norm_ %.7g", c.name, norm, ref[c.name])
			}
			worst := 0.0
			for i := 0; i < 3; i++ {
				g := a.Params[i].MustGrad(false)
				worst = math.Max(worst, maxDiff(t, g, filepath.Join(dir, fmt.Sprintf("%s_g%d.npy", c.name, i))))
				g.MustDrop()
			}
			t.Logf(
				"max norm %g: total norm %.6g (PyTorch %.6g), clipped gradients max |diff| %.3g",
				c.max,
				norm,
				ref[c.name],
				worst,
			)
			if worst > 1e-6 {
				t.Errorf("%s: gradients differ from clip_grad_norm_'s by %.3g", c.name, worst)
			}
			for _, p := range a.Params {
				p.MustDrop()
			}
		}
	})
}
