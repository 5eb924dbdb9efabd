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

// pyAdam runs torch.optim.Adam (lr 1e-2, weight decay 0.01) for five steps on
// three parameters with fixed gradients, once with foreach=False (PyTorch's
// single-tensor default on the CPU) and once with foreach=True (its
// multi-tensor default on CUDA, which on the CPU runs the same _foreach_*
// ops), and saves the parameters and both moments after the last step.
const pyAdam = `
import sys, json, numpy as np, torch
d = sys.argv[1]
rng = np.random.default_rng(0)
shapes = [(7, 5), (13,), (3, 4, 2, 2)]
init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
for i, x in enumerate(init):
    np.save(d + "/init%d.npy" % i, x)
    for k in range(5):
        np.save(d + "/grad%d_%d.npy" % (k, i), grads[k][i])
for foreach in (False, True):
    ps = [torch.tensor(x, requires_grad=True) for x in init]
    opt = torch.optim.Adam(ps, lr=1e-2, weight_decay=0.01, foreach=foreach)
    for k in range(5):
        opt.zero_grad()
        for p, g in zip(ps, grads[k]):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    tag = "foreach" if foreach else "single"
    for i, p in enumerate(ps):
        st = opt.state[p]
        np.save(d + "/%s_p%d.npy" % (tag, i), p.detach().numpy())
        np.save(d + "/%s_m%d.npy" % (tag, i), st["exp_avg"].numpy())
        np.save(d + "/%s_v%d.npy" % (tag, i), st["exp_avg_sq"].numpy())
json.dump({"n": len(shapes)}, open(d + "/ref.json", "w"))
`

// TestAdamMatchesPyTorch: both of captiongo's Adam implementations (the
// single-tensor loop NewAdam picks on the CPU and the _foreach_ one it picks
// on CUDA) give exactly the parameters and moments of torch.optim.Adam with
// foreach=False and foreach=True after five steps with weight decay. The
// gradients come from a backward of sum(p * g), whose gradient is exactly g.
func TestAdamMatchesPyTorch(t *testing.T) {
	var ref struct{ N int }
	dir := pythonReference(t, pyAdam, &ref)
	run(t, func() {
		load := func(name string) *ts.Tensor {
			d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return torch.FromFloat32s(d, shape, gotch.CPU)
		}
		names := map[torch.AdamImpl]string{torch.AdamSingle: "single-tensor", torch.AdamForeach: "foreach"}
		final := map[torch.AdamImpl][]*ts.Tensor{}
		for _, impl := range []torch.AdamImpl{torch.AdamSingle, torch.AdamForeach} {
			a := &Adam{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Impl: impl}
			for i := 0; i < ref.N; i++ {
				p := load(fmt.Sprintf("init%d.npy", i)).MustSetRequiresGrad(true, true)
				a.Names = append(a.Names, fmt.Sprint(i))
				a.Params = append(a.Params, p)
				a.M = append(a.M, p.MustZerosLike(false))
				a.V = append(a.V, p.MustZerosLike(false))
			}
			for k := 0; k < 5; k++ {
				a.ZeroGrad()
				var loss *ts.Tensor
				for i, p := range a.Params {
					g := load(fmt.Sprintf("grad%d_%d.npy", k, i))
					s := p.MustMul(g, false).MustSum(gotch.Float, true)
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
				a.Step(1e-2)
			}
			for _, side := range []string{"single", "foreach"} {
				worst := 0.0 // in float32 ulps of the reference value
				for i := 0; i < ref.N; i++ {
					for _, c := range []struct {
						what string
						got  *ts.Tensor
					}{{"p", a.Params[i]}, {"m", a.M[i]}, {"v", a.V[i]}} {
						want, _, err := torch.ReadNpy(filepath.Join(dir, fmt.Sprintf("%s_%s%d.npy", side, c.what, i)))
						if err != nil {
							t.Fatal(err)
						}
						// ulps of the tensor's largest value: near-zero moments come
						// from cancellation, where relative error means nothing.
						big := float32(0)
						for _, w := range want {
							big = max(big, float32(math.Abs(float64(w))))
						}
						ulp := float64(math.Nextafter32(big, float32(math.Inf(1))) - big)
						for k, g := range torch.Float32s(c.got) {
							worst = math.Max(worst, math.Abs(float64(g-want[k]))/ulp)
						}
					}
				}
				limit := 0.0 // exact
				t.Logf(
					"captiongo %s vs torch.optim.Adam(foreach=%v): max difference over parameters and moments after 5 steps = %.0f "+
						"ulp",
					names[impl],
					side == "foreach",
					worst,
				)
				if worst > limit {
					t.Errorf(
						"captiongo %s vs torch.optim.Adam(foreach=%v): %.0f ulp apart, want at most %.0f",
						names[impl],
						side == "foreach",
						worst,
						limit,
					)
				}
			}
			final[impl] = a.Params
		}
		// The op-by-op implementations run the same arithmetic.
		for i := range final[torch.AdamSingle] {
			d := final[torch.AdamSingle][i].MustSub(final[torch.AdamForeach][i], false).MustAbs(true).MustMax(true)
			if v := torch.Item(d); v != 0 {
				t.Errorf("parameter %d: single-tensor and foreach Adam differ by %g", i, v)
			}
			d.MustDrop()
		}
	})
}
