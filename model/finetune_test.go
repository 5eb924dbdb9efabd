package model

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/internal/torch"
)

// pyFineTune: one fine-tuning step of the baseline with every parameter
// trainable (train_CNN = True: Inception-v3's 24M and the decoder), BatchNorm in
// training mode (batch statistics, running ones updated), dropout off so both
// sides draw nothing random, at 139 px. The reference asserts every parameter's
// gradient is non-zero, then saves the loss, every gradient, every parameter
// after one Adam step (lr 1e-4) and the BatchNorm running statistics.
const pyFineTune = `
import sys, json, numpy as np, torch
import refmodels
d = sys.argv[1]
V, E, H, B, T = 30, 16, 24, 4, 7
torch.manual_seed(0)
m = refmodels.baseline(V, E, H)
inc, dec = m.encoderCNN.inception, m.decoderRNN
rng = np.random.default_rng(1)
x = rng.standard_normal((B, 3, 139, 139)).astype(np.float32)
tok = np.zeros((B, T), np.int64)
for b, n in enumerate([7, 5, 6, 3]):
    tok[b, 0], tok[b, n - 1] = 1, 2
    tok[b, 1:n - 1] = rng.integers(4, V, n - 2)
np.save(d + "/x.npy", x); np.save(d + "/tok.npy", tok.astype(np.float32))
torch.save(m.state_dict(), d + "/cap.pth")
x, tok = torch.from_numpy(x), torch.from_numpy(tok)
inc.dropout.p = 0.0
m.train()
params = [(n, p) for n, p in m.named_parameters()]
assert all(p.requires_grad for _, p in params)
opt = torch.optim.Adam([p for _, p in params], lr=1e-4)
opt.zero_grad()
logits = dec.teacher(torch.relu(inc(x)), tok)
loss = refmodels.caption_loss(logits, None, tok)
loss.backward()
dead = [n for n, p in params if p.grad is None or p.grad.abs().max().item() == 0]
assert not dead, "no gradient reaches %s" % dead
for n, p in params:
    np.save(d + "/grad_" + n + ".npy", p.grad.numpy())
opt.step()
for n, p in params:
    np.save(d + "/step1_" + n + ".npy", p.detach().numpy())
buffers = [n for n, _ in m.named_buffers() if "running" in n]
assert all(b.abs().max() > 0 for n, b in m.named_buffers() if "running_mean" in n), "running means not updated"
for n, b in m.named_buffers():
    if "running" in n:
        np.save(d + "/buf_" + n + ".npy", b.numpy())
json.dump({"loss": loss.item(), "params": [n for n, _ in params], "buffers": buffers,
           "values": sum(p.numel() for _, p in params)}, open(d + "/ref.json", "w"))
`

// TestFineTuneStepMatchesPyTorch: one fine-tuning step through the whole
// backbone against PyTorch: the loss, the gradient of every one of the ~24M
// parameters, the parameters after the Adam step and BatchNorm's updated
// running statistics.
//
// Adam's first step moves each element by lr * g / (|g| + eps), about
// lr * sign(g): where a gradient element is within float rounding of zero its
// sign is not defined by either side, so those elements (|g| under 1e-3 of
// their tensor's largest) are counted and bounded by the step itself; every
// other element must land within 1e-3 of a step of PyTorch's.
func TestFineTuneStepMatchesPyTorch(t *testing.T) {
	var ref struct {
		Loss    float64  `json:"loss"`
		Params  []string `json:"params"`
		Buffers []string `json:"buffers"`
		Values  int64    `json:"values"`
	}
	dir := pythonReference(t, pyFineTune, &ref)
	const lr = 1e-4
	run(t, func() {
		m, err := NewCaptioner(Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1, TrainCNN: true},
			gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(filepath.Join(dir, "cap.pth")); err != nil {
			t.Fatal(err)
		}
		vars := m.VS.Variables()
		var names []string
		var values int64
		for n, v := range vars {
			if v.MustRequiresGrad() {
				names = append(names, n)
				values += int64(v.Numel())
			}
		}
		sort.Strings(names)
		want := append([]string(nil), ref.Params...)
		sort.Strings(want)
		if strings.Join(names, ",") != strings.Join(want, ",") || values != ref.Values {
			t.Fatalf("trainable: %d tensors (%d values), PyTorch %d (%d)", len(names), values, len(want), ref.Values)
		}
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		tok := npyTensor(t, filepath.Join(dir, "tok.npy")).MustTotype(gotch.Int64, true)
		opt := NewAdam(m.VS, 0)
		opt.ZeroGrad()
		logits := m.Forward(x, tok, true)
		loss := Loss(logits, tok)
		if got := torch.Item(loss); math.Abs(got-ref.Loss) > 1e-5 {
			t.Errorf("loss %.7f, PyTorch %.7f", got, ref.Loss)
		}
		loss.MustBackward()
		worst, worstName := worstGradDiff(t, vars, names,
			func(n string) string { return filepath.Join(dir, "grad_"+n+".npy") })
		t.Logf("gradients of all %d parameters (%.1fM values): max |go - pytorch| / max |pytorch| = %.3g (%s)",
			len(names), float64(values)/1e6, worst, worstName)
		if worst > 1e-4 {
			t.Errorf("gradient of %s differs from PyTorch's by %.3g (relative)", worstName, worst)
		}
		// The step's inputs: each element's gradient on the reference side.
		grads := map[string][]float32{}
		for _, n := range names {
			g, _, err := torch.ReadNpy(filepath.Join(dir, "grad_"+n+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			grads[n] = g
		}
		ours := map[string][]float32{}
		for _, n := range names {
			v := vars[n]
			g := v.MustGrad(false)
			ours[n] = torch.Float32s(g)
			g.MustDrop()
		}
		opt.Step(lr)
		loss.MustDrop()
		logits.MustDrop()
		var defined, undefined int
		worst, worstName = 0, ""
		for _, n := range names {
			v := vars[n]
			got := torch.Float32s(&v)
			wantP, _, err := torch.ReadNpy(filepath.Join(dir, "step1_"+n+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			g := grads[n]
			gmax := 0.0
			for _, e := range g {
				gmax = math.Max(gmax, math.Abs(float64(e)))
			}
			for i := range got {
				d := math.Abs(float64(got[i]) - float64(wantP[i]))
				// Adam's first step is lr g/(|g| + eps); the two gradients'
				// float32 difference dg moves it by up to lr eps dg/(|g| + eps)^2,
				// which is large where |g| is near eps: there the bound is that.
				dg := math.Abs(float64(ours[n][i]) - float64(g[i]))
				small := math.Min(math.Abs(float64(ours[n][i])), math.Abs(float64(g[i])))
				if sens := lr * opt.Eps * dg / ((small + opt.Eps) * (small + opt.Eps)); sens > 1e-4*lr ||
					math.Abs(float64(g[i])) < 1e-3*gmax {
					undefined++
					if allow := math.Min(sens, 2*lr) + 1e-3*lr + ulp(wantP[i]); d > allow {
						t.Fatalf("%s[%d] moved %.3g lr from PyTorch's; its gradients (%.3g, PyTorch %.3g) allow %.3g lr",
							n, i, d/lr, ours[n][i], g[i], allow/lr)
					}
					continue
				}
				d = math.Max(0, d-ulp(wantP[i])) // the last bit of p - update may round either way
				defined++
				if d > worst {
					worst, worstName = d, n
				}
			}
		}
		t.Logf("after one Adam step: max |go - pytorch| = %.3g lr (%s) over %d elements whose gradient sign is "+
			"defined; %d near-zero-gradient elements (%.2f%%) within what their gradients' difference allows",
			worst/lr, worstName, defined, undefined, 100*float64(undefined)/float64(defined+undefined))
		if worst > 1e-3*lr {
			t.Errorf("parameters after the step differ by %.3g lr (%s)", worst/lr, worstName)
		}
		// BatchNorm's running statistics after one training-mode pass.
		worstB, worstBName := 0.0, ""
		for _, n := range ref.Buffers {
			v, ok := vars[n]
			if !ok {
				t.Fatalf("no buffer %s in captiongo's model", n)
			}
			if d := maxRelDiff(t, &v, filepath.Join(dir, "buf_"+n+".npy")); d > worstB {
				worstB, worstBName = d, n
			}
		}
		t.Logf("%d BatchNorm running statistics: max relative difference %.3g (%s)", len(ref.Buffers), worstB,
			worstBName)
		if worstB > 1e-4 {
			t.Errorf("running statistic %s differs by %.3g (relative)", worstBName, worstB)
		}
		x.MustDrop()
		tok.MustDrop()
		// vars are struct copies: they do not keep the model (whose finalizers
		// free its tensors) alive (TestLoadKeepsTheModelAlive).
		runtime.KeepAlive(m)
		runtime.KeepAlive(opt)
	})
}

// ulp is the spacing of float32 values at x.
func ulp(x float32) float64 {
	return float64(math.Nextafter32(float32(math.Abs(float64(x))), float32(math.Inf(1)))) - math.Abs(float64(x))
}

// pyPartialFineTune: two steps of fine-tuning after warm-up as sgrvinod's
// tutorial does it, on the attention decoder: the backbone's blocks from
// Mixed_7a on train (every parameter of them, with their own Adam group at
// lr 1e-4 beside the decoder's 4e-4), the earlier blocks are frozen, and all
// BatchNorm layers run on their running statistics (eval mode), which therefore
// stay as they are. Those statistics come from the batch (pySATBatch), so the
// random network is live; the reference asserts every trainable tensor's first
// gradient is far from zero, and saves the loss, every gradient of both steps
// and the parameters after the second.
const pyPartialFineTune = pySATBatch + `
for p in inc.parameters():
    p.requires_grad_(False)
for blk in (inc.Mixed_7a, inc.Mixed_7b, inc.Mixed_7c):
    for p in blk.parameters():
        p.requires_grad_(True)
inc.eval()
dec.train()
feats = {}
inc.Mixed_7c.register_forward_hook(lambda mod, i, o: feats.__setitem__("map", o))
dec_params = [(n, p) for n, p in m.named_parameters() if p.requires_grad and n.startswith("decoderRNN.")]
cnn_params = [(n, p) for n, p in m.named_parameters() if p.requires_grad and n.startswith("encoderCNN.")]
opt = torch.optim.Adam([{"params": [p for _, p in dec_params], "lr": 4e-4},
                        {"params": [p for _, p in cnn_params], "lr": 1e-4}])
before = {n: b.clone() for n, b in m.named_buffers()}
losses = []
for step in range(2):
    opt.zero_grad()
    inc(x)
    enc = feats["map"].flatten(2).transpose(1, 2)
    loss = refmodels.caption_loss(*dec.teacher(enc, tok), tok, alpha_c=1.0)
    losses.append(loss.item())
    loss.backward()
    for n, p in dec_params + cnn_params:
        if step == 0 and n != "decoderRNN.attention.full_att.bias":
            assert p.grad.abs().max() > 1e-5 * max(1.0, p.abs().max().item()), "gradient of %s is ~0" % n
        np.save(d + "/grad%d_" % (step + 1) + n + ".npy", p.grad.numpy())
    opt.step()
assert all(torch.equal(before[n], b) for n, b in m.named_buffers()), "BatchNorm statistics moved"
for n, p in dec_params + cnn_params:
    np.save(d + "/step2_" + n + ".npy", p.detach().numpy())
json.dump({"losses": losses, "decoder": [n for n, _ in dec_params], "backbone": [n for n, _ in cnn_params]},
          open(d + "/ref.json", "w"))
`

// TestPartialFineTuneStepMatchesPyTorch: fine-tuning after warm-up
// (Captioner.Tune from Mixed_7a with the attention decoder, the way the
// trainer runs it: the decoder's Adam made before Tune, the backbone's own Adam
// over what Tune returns) against PyTorch's equivalent, two steps: the tuned
// tensors are exactly PyTorch's trainable backbone parameters, the losses and
// every gradient agree, each parameter after the second Adam step is within
// what the two sides' gradient differences make of it, and the frozen tensors,
// their (absent) gradients and every BatchNorm statistic are untouched.
func TestPartialFineTuneStepMatchesPyTorch(t *testing.T) {
	var ref struct {
		Losses   []float64 `json:"losses"`
		Decoder  []string  `json:"decoder"`
		Backbone []string  `json:"backbone"`
	}
	dir := pythonReference(t, pyPartialFineTune, &ref)
	lrs := map[bool]float64{false: 4e-4, true: 1e-4} // by "is a backbone tensor"
	run(t, func() {
		m, err := NewCaptioner(
			Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1, Decoder: "attention", AttentionDim: 20},
			gotch.CPU,
		)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(filepath.Join(dir, "sat.pth")); err != nil {
			t.Fatal(err)
		}
		decOpt := NewAdam(m.VS, 0)
		names, params, err := m.Tune("Mixed_7a")
		if err != nil {
			t.Fatal(err)
		}
		cnnOpt := NewAdamFor(names, params, 0)
		for _, c := range []struct {
			what      string
			got, want []string
		}{{"decoder", decOpt.Names, ref.Decoder}, {"backbone", names, ref.Backbone}} {
			w := append([]string(nil), c.want...)
			sort.Strings(w)
			if strings.Join(c.got, ",") != strings.Join(w, ",") {
				t.Fatalf("trainable %s tensors\n got %v\nwant %v", c.what, c.got, w)
			}
		}
		trainable := append(append([]string(nil), decOpt.Names...), names...)
		isTrained := map[string]bool{}
		for _, n := range trainable {
			isTrained[n] = true
		}
		vars := m.VS.Variables()
		start := map[string][]float32{} // every tensor, trained or not
		for n, v := range vars {
			start[n] = floats(&v)
		}
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		tok := npyTensor(t, filepath.Join(dir, "tok.npy")).MustTotype(gotch.Int64, true)
		// As trained, the frozen blocks run without gradient and hence with
		// their BatchNorm folded into the conv; their map then differs from
		// torchvision's in the last bits (TestFIDInceptionMatchesTorchScript), which is
		// enough to flip a few ReLUs of the tuned blocks and move single
		// gradient elements by up to 1e-3 of the largest. The loss must agree;
		// the gradients and steps are compared unfolded, op for op.
		l, a := m.ForwardAlphas(x, tok, true)
		loss := LossAttention(l, a, tok, 1.0)
		if got := torch.Item(loss); math.Abs(got-ref.Losses[0]) > 1e-5 {
			t.Errorf("loss with the frozen blocks folded %.7f, PyTorch %.7f", got, ref.Losses[0])
		}
		loss.MustDrop()
		l.MustDrop()
		a.MustDrop()
		prev := useFolding
		useFolding = false
		defer func() { useFolding = prev }()
		grads := map[string][2][][]float32{} // per trained tensor: our and PyTorch's gradient at each step
		for step := 0; step < 2; step++ {
			decOpt.ZeroGrad()
			cnnOpt.ZeroGrad()
			l, a := m.ForwardAlphas(x, tok, true)
			loss := LossAttention(l, a, tok, 1.0)
			if got := torch.Item(loss); math.Abs(got-ref.Losses[step]) > 1e-5 {
				t.Errorf("step %d: loss %.7f, PyTorch %.7f", step+1, got, ref.Losses[step])
			}
			loss.MustBackward()
			refGrad := func(n string) string { return filepath.Join(dir, fmt.Sprintf("grad%d_%s.npy", step+1, n)) }
			for _, n := range trainable {
				v := vars[n]
				g := v.MustGrad(false)
				want, _, err := torch.ReadNpy(refGrad(n))
				if err != nil {
					t.Fatal(err)
				}
				grads[n] = [2][][]float32{append(grads[n][0], floats(g)), append(grads[n][1], want)}
				g.MustDrop()
			}
			worst, worstName := worstGradDiff(t, vars, trainable, refGrad)
			t.Logf("step %d: gradients of %d tensors (%d tuned backbone ones): max |go - pytorch| / max |pytorch| "+
				"= %.3g (%s)", step+1, len(trainable), len(names), worst, worstName)
			if worst > 1e-4 {
				t.Errorf("step %d: gradient of %s differs from PyTorch's by %.3g (relative)", step+1, worstName, worst)
			}
			for n, v := range vars {
				if !isTrained[n] {
					g := v.MustGrad(false)
					if g.MustDefined() {
						t.Errorf("frozen %s has a gradient", n)
					}
					g.MustDrop()
				}
			}
			decOpt.Step(lrs[false])
			cnnOpt.Step(lrs[true])
			loss.MustDrop()
			l.MustDrop()
			a.MustDrop()
		}
		var moved int
		for n, v := range vars {
			got := floats(&v)
			if !isTrained[n] {
				for i := range got {
					if got[i] != start[n][i] {
						t.Fatalf("frozen %s[%d] changed: %g -> %g", n, i, start[n][i], got[i])
					}
				}
				continue
			}
			if n == "decoderRNN.attention.full_att.bias" { // zero gradient by construction (softmax ignores a shift)
				continue
			}
			want, _, err := torch.ReadNpy(filepath.Join(dir, "step2_"+n+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			lr := lrs[strings.HasPrefix(n, BackbonePrefix)]
			ours := adamReplay(start[n], grads[n][0], lr, decOpt.Eps)
			theirs := adamReplay(start[n], grads[n][1], lr, decOpt.Eps)
			for i := range got {
				allow := math.Abs(ours[i]-theirs[i]) + 1e-3*lr + 4*ulp(want[i])
				if d := math.Abs(float64(got[i]) - float64(want[i])); d > allow {
					t.Fatalf("%s[%d] after 2 Adam steps: %.8g, PyTorch %.8g; the gradients allow %.3g", n, i, got[i],
						want[i], allow)
				}
				if got[i] != start[n][i] {
					moved++
				}
			}
		}
		t.Logf("after 2 Adam steps every trained element within what its gradients allow; %d elements moved", moved)
		x.MustDrop()
		tok.MustDrop()
		runtime.KeepAlive(m)
		runtime.KeepAlive(decOpt)
		runtime.KeepAlive(cnnOpt)
	})
}
