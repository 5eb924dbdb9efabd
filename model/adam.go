package model

import (
	"fmt"
	"math"
	"runtime"
	"sort"

	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// Adam is torch.optim.Adam (betas 0.9/0.999, eps 1e-8, L2 weight decay added to
// the gradient), computed in libtorch the way PyTorch computes it by default:
// its multi-tensor (foreach) implementation on CUDA, its single-tensor one on
// the CPU (see torch.AdamImpl). Unlike gotch's binding of libtorch's C++ Adam,
// its moments are tensors captiongo can save in a checkpoint, so a resumed run
// continues exactly; a golden test checks it against PyTorch's Adam.
type Adam struct {
	Names             []string
	Params            []*ts.Tensor
	M, V              []*ts.Tensor
	Steps             int
	Beta1, Beta2, Eps float64
	WeightDecay       float64
	// Impl is how the update runs: NewAdam picks torch.AdamForeach when the
	// parameters are on CUDA, as torch.optim.Adam's default does, and
	// torch.AdamSingle on the CPU.
	Impl torch.AdamImpl
}

// NewAdam collects the VarStore's trainable variables (sorted by name).
func NewAdam(vs *nn.VarStore, weightDecay float64) *Adam {
	// TrainableVariables has no names; match them to Variables by data pointer.
	// (Variables' struct copies do not keep the variables alive; vs does.)
	defer runtime.KeepAlive(vs)
	vars := vs.Variables()
	ptrs := map[uintptr]*ts.Tensor{}
	for _, t := range vs.TrainableVariables() {
		ptrs[uintptr(t.MustDataPtr())] = t
	}
	var names []string
	byName := map[string]*ts.Tensor{}
	for n, v := range vars {
		if t, ok := ptrs[uintptr(v.MustDataPtr())]; ok {
			byName[n] = t
			names = append(names, n)
		}
	}
	sort.Strings(names)
	params := make([]*ts.Tensor, len(names))
	for i, n := range names {
		params[i] = byName[n]
	}
	return NewAdamFor(names, params, weightDecay)
}

// NewAdamFor is an Adam over the given named tensors (NewAdam's, or
// Captioner.Tune's), with fresh moments and step count, as a PyTorch optimiser
// made for them.
func NewAdamFor(names []string, params []*ts.Tensor, weightDecay float64) *Adam {
	a := &Adam{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay, Names: names, Params: params}
	for _, p := range params {
		a.M = append(a.M, p.MustZerosLike(false))
		a.V = append(a.V, p.MustZerosLike(false))
	}
	a.Impl = torch.AdamSingle
	if len(params) > 0 && params[0].MustDevice().IsCuda() {
		a.Impl = torch.AdamForeach
	}
	return a
}

// Drop frees the moments (the parameters belong to their VarStore).
func (a *Adam) Drop() {
	for i := range a.M {
		a.M[i].MustDrop()
		a.V[i].MustDrop()
	}
	a.M, a.V = nil, nil
}

// ZeroGrad sets the parameters' gradients to None, as PyTorch 2's zero_grad.
func (a *Adam) ZeroGrad() { torch.ZeroGrads(a.Params) }

// ClipGradNorm scales the gradients so their global L2 norm is at most max
// (torch.nn.utils.clip_grad_norm_) and returns the norm before clipping.
func (a *Adam) ClipGradNorm(max float64) float64 {
	var total float64
	torch.NoGrad(func() {
		var sq float64
		for _, p := range a.Params {
			g := p.MustGrad(false)
			if g.MustDefined() {
				n := g.MustNorm(false)
				v := torch.Item(n)
				n.MustDrop()
				sq += v * v
			}
			g.MustDrop()
		}
		total = math.Sqrt(sq)
		if max > 0 {
			coef := max / (total + 1e-6)
			if coef < 1 {
				for _, p := range a.Params {
					g := p.MustGrad(false)
					if g.MustDefined() {
						torch.InPlace(g, func() { g.MustMulScalar_(ts.FloatScalar(coef)) })
					}
					g.MustDrop()
				}
			}
		}
	})
	return total
}

// Step applies one Adam update with learning rate lr. The update runs in
// libtorch (internal/torch/helpers.cpp) as PyTorch's Adam does.
func (a *Adam) Step(lr float64) {
	a.Steps++
	if err := torch.AdamStep(a.Params, a.M, a.V, lr, a.Beta1, a.Beta2, a.Eps, a.WeightDecay, a.Steps, a.Impl); err != nil {
		panic(err)
	}
}

// State returns the moments as named tensors (for a checkpoint).
func (a *Adam) State() []ts.NamedTensor {
	var out []ts.NamedTensor
	for i, n := range a.Names {
		out = append(
			out,
			ts.NamedTensor{Name: "exp_avg." + n, Tensor: a.M[i]},
			ts.NamedTensor{Name: "exp_avg_sq." + n, Tensor: a.V[i]},
		)
	}
	return out
}

// LoadState copies saved moments back (the step count comes from the caller).
func (a *Adam) LoadState(named map[string]*ts.Tensor, steps int) error {
	for i, n := range a.Names {
		m, ok1 := named["exp_avg."+n]
		v, ok2 := named["exp_avg_sq."+n]
		if !ok1 || !ok2 {
			return fmt.Errorf("optimiser state has no moments for %s", n)
		}
		torch.NoGrad(func() {
			a.M[i].Copy_(m)
			a.V[i].Copy_(v)
		})
	}
	a.Steps = steps
	return nil
}
