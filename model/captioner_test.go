package model

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// The PyTorch reference of the captioner (the baseline's CNNtoRNN with this
// project's teacher-forcing alignment), dropout 0 so both sides are
// deterministic. It saves the weights, the logits and loss on fixed inputs,
// every gradient of the first step, every trainable parameter after one and
// ten Adam steps, and ten steps' losses.
//
// The regime is live, and the reference asserts it: the random backbone's
// BatchNorm statistics are set from the batch (without that its features
// reach ~1e8 and the LSTM's gates sit at 0 or 1, so most gradients vanish and
// matching parameters proves little), the pooled features are O(1), most gate
// activations of the first step lie inside (0.02, 0.98), and every trainable
// tensor's gradient is far from zero.
const pyCaptioner = `
import sys, json, numpy as np, torch
import refmodels
d = sys.argv[1]
V, E, H, L, B, T = 30, 16, 24, 2, 4, 7
torch.manual_seed(0)
m = refmodels.baseline(V, E, H, L)
inc, dec = m.encoderCNN.inception, m.decoderRNN
rng = np.random.default_rng(1)
x = rng.standard_normal((B, 3, 75, 75)).astype(np.float32)
tok = np.zeros((B, T), np.int64)
for b, n in enumerate([7, 5, 6, 3]):
    tok[b, 0], tok[b, n - 1] = 1, 2
    tok[b, 1:n - 1] = rng.integers(4, V, n - 2)
np.save(d + "/x.npy", x); np.save(d + "/tok.npy", tok.astype(np.float32))
x, tok = torch.from_numpy(x), torch.from_numpy(tok)
refmodels.calibrate_bn(inc, x)  # BatchNorm statistics from the batch
torch.save(m.state_dict(), d + "/cap.pth")
for p in inc.parameters():
    p.requires_grad_(False)
for p in inc.fc.parameters():
    p.requires_grad_(True)
inc.eval()
with torch.no_grad():
    P = refmodels.pooled(inc, x)
assert P.abs().max() < 1e3 and P.std() > 1e-2, \
    "pooled features out of the live range: max %g std %g" % (P.abs().max(), P.std())
with torch.no_grad():  # the gates of the image step (h0 = 0)
    g = torch.relu(inc.fc(P)) @ dec.lstm.weight_ih_l0.t() + dec.lstm.bias_ih_l0 + dec.lstm.bias_hh_l0
    live = ((torch.sigmoid(g) > 0.02) & (torch.sigmoid(g) < 0.98)).float().mean().item()
assert live > 0.6, "only %.2f of the first step's gates are unsaturated" % live
def forward(tok):
    return dec.teacher(torch.relu(inc.fc(P)), tok)
def loss_of(logits):
    return refmodels.caption_loss(logits, None, tok)
logits = forward(tok)
np.save(d + "/logits.npy", logits.detach().numpy())
names = [n for n, p in m.named_parameters() if p.requires_grad]
opt = torch.optim.Adam([p for n, p in m.named_parameters() if p.requires_grad], lr=1e-3)
losses = []
for step in range(10):
    opt.zero_grad()
    loss = loss_of(forward(tok))
    losses.append(loss.item())
    loss.backward()
    if step == 0:
        for n, p in m.named_parameters():
            if p.requires_grad:
                assert p.grad.abs().max() > 1e-5 * max(1.0, p.abs().max().item()), "gradient of %s is ~0" % n
                np.save(d + "/grad1_" + n + ".npy", p.grad.numpy())
    opt.step()
    if step in (0, 9):
        for n, p in m.named_parameters():
            if p.requires_grad:
                np.save(d + "/step%d_" % (step + 1) + n + ".npy", p.detach().numpy())
json.dump({"losses": losses, "trainable": names, "live_gates": live, "pooled_max": P.abs().max().item()},
          open(d + "/ref.json", "w"))
`

func TestCaptionerMatchesPyTorch(t *testing.T) {
	var ref struct {
		Losses    []float64 `json:"losses"`
		Trainable []string  `json:"trainable"`
		LiveGates float64   `json:"live_gates"`
		PooledMax float64   `json:"pooled_max"`
	}
	dir := pythonReference(t, pyCaptioner, &ref)
	run(t, func() {
		// The backbone unfolded, op for op as torchvision runs it: folding's
		// float32 rounding (relative 1e-6) moves a few fc inputs across ReLU's
		// kink, and Adam turns those into lr-sized parameter differences.
		prev := useFolding
		useFolding = false
		defer func() { useFolding = prev }()
		m, err := NewCaptioner(Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 2}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(filepath.Join(dir, "cap.pth")); err != nil {
			t.Fatal(err)
		}
		var names []string
		for n, v := range m.VS.Variables() {
			if v.MustRequiresGrad() {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		want := append([]string(nil), ref.Trainable...)
		sort.Strings(want)
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Fatalf("trainable parameters\n got %v\nwant %v", names, want)
		}
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		tokf := npyTensor(t, filepath.Join(dir, "tok.npy"))
		tok := tokf.MustTotype(gotch.Int64, true)
		logits := m.Forward(x, tok, true)
		if d := maxDiff(t, logits, filepath.Join(dir, "logits.npy")); d > 1e-5 {
			t.Errorf("logits: max |go - pytorch| = %.3g > 1e-5", d)
		} else {
			t.Logf("logits: max |go - pytorch| = %.3g", d)
		}
		logits.MustDrop()
		opt := NewAdam(m.VS, 0)
		if len(opt.Names) != len(names) {
			t.Fatalf("Adam holds %d parameters, want %d", len(opt.Names), len(names))
		}
		for step := 0; step < 10; step++ {
			opt.ZeroGrad()
			lg := m.Forward(x, tok, true)
			loss := Loss(lg, tok)
			got := loss.Float64Values()[0]
			if math.Abs(got-ref.Losses[step]) > 1e-4 {
				t.Errorf("step %d: loss %.7f, PyTorch %.7f", step, got, ref.Losses[step])
			}
			if step == 0 || step == 9 {
				t.Logf("step %d: loss %.7f, PyTorch %.7f", step, got, ref.Losses[step])
			}
			loss.MustBackward()
			if step == 0 { // every gradient of the first step
				worst, worstName := worstGradDiff(
					t,
					m.VS.Variables(),
					names,
					func(n string) string { return filepath.Join(dir, "grad1_"+n+".npy") },
				)
				t.Logf(
					"first step's gradients: max |go - pytorch| / max |pytorch| = %.3g (%s); %.0f%% of the gates unsaturated, "+
						"pooled max %.3g",
					worst,
					worstName,
					100*ref.LiveGates,
					ref.PooledMax,
				)
				if worst > 1e-4 {
					t.Errorf("gradient of %s differs from PyTorch's by %.3g (relative)", worstName, worst)
				}
			}
			opt.Step(1e-3)
			loss.MustDrop()
			lg.MustDrop()
			if step == 0 || step == 9 {
				worst, worstName := worstParamDiff(t, m.VS.Variables(), names, func(n string) string {
					return filepath.Join(dir, fmt.Sprintf("step%d_%s.npy", step+1, n))
				})
				t.Logf(
					"after %d Adam step(s): max |go - pytorch| over %d parameters = %.3g %s",
					step+1,
					len(names),
					worst,
					worstName,
				)
				// One Adam step is close to lr * sign(grad) whatever the betas;
				// ten steps tell the moments apart. The bound is 1% of a step
				// (lr 1e-3): Adam divides each gradient element by its own size,
				// so an element whose gradient is near eps (1e-8) turns the loss
				// node's rounding (1e-8 of the largest gradient) into ~1e-6.
				if worst > 1e-5 {
					t.Errorf("parameters after %d Adam step(s) differ by %.3g (%s) > 1e-5", step+1, worst, worstName)
				}
			}
		}
		x.MustDrop()
		tok.MustDrop()
	})
}

// TestLoadRejectsWrongArchitecture: a missing key, a wrong shape and a file of
// another model fail with the parameter named and both shapes given.
func TestLoadRejectsWrongArchitecture(t *testing.T) {
	dir := t.TempDir()
	testutil.RunPython(t, `
import sys, torch, torch.nn as nn
d = sys.argv[1]
torch.save({"decoderRNN.embed.weight": torch.zeros(30, 16)}, d + "/partial.pth")
torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, d + "/resnet.pth")
`, dir)
	run(t, func() {
		m, _ := NewCaptioner(Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1}, gotch.CPU)
		err := m.LoadFile(filepath.Join(dir, "resnet.pth"))
		if err == nil || !strings.Contains(err.Error(), "do not fit this architecture") ||
			!strings.Contains(err.Error(), "conv1.weight") {
			t.Errorf("resnet file: %v", err)
		}
		err = m.LoadFile(filepath.Join(dir, "partial.pth"))
		if err == nil || !strings.Contains(err.Error(), "not in the file") {
			t.Errorf("partial file: %v", err)
		}
		// Wrong shape: save this model with a bigger vocabulary and load it back.
		big, _ := NewCaptioner(Config{VocabSize: 31, EmbedSize: 16, HiddenSize: 24, NumLayers: 1}, gotch.CPU)
		p := filepath.Join(dir, "big.gt")
		if err := big.VS.Save(p); err != nil {
			t.Fatal(err)
		}
		err = m.LoadFile(p)
		if err == nil ||
			!strings.Contains(
				err.Error(),
				"parameter decoderRNN.embed.weight has shape [31 16] in the file, the model expects [30 16]",
			) {
			t.Errorf("wrong shape: %v", err)
		}
		// gotch's own format round-trips.
		q := filepath.Join(dir, "same.gt")
		if err := m.VS.Save(q); err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(q); err != nil {
			t.Errorf("gotch file of the same model: %v", err)
		}
		_ = ts.NewTensor
		_ = torch.Run
	})
}

// TestBackboneDropout: in training the head's input first passes Inception3's
// own dropout (BackboneDropout), as torchvision's avgpool -> dropout -> fc does;
// in eval mode, or at 0, it does not.
func TestBackboneDropout(t *testing.T) {
	run(t, func() {
		for _, p := range []float64{0, 0.5} {
			m, err := NewCaptioner(
				Config{VocabSize: 10, EmbedSize: 2, HiddenSize: 4, NumLayers: 1, BackboneDropout: p},
				gotch.CPU,
			)
			if err != nil {
				t.Fatal(err)
			}
			// fc reads feature 0 alone: out[0] = x[0] (1 kept, 0 or 2 with dropout).
			torch.NoGrad(func() {
				m.baseline().fcW.MustZero_()
				m.baseline().fcB.MustZero_()
				one := ts.MustOnes([]int64{1}, gotch.Float, gotch.CPU)
				m.baseline().fcW.MustNarrow(0, 0, 1, false).MustNarrow(1, 0, 1, true).Copy_(one)
				one.MustDrop()
			})
			pooled := ts.MustOnes([]int64{200, 2048}, gotch.Float, gotch.CPU)
			for _, train := range []bool{false, true} {
				var out []float32
				torch.NoGrad(func() {
					h := m.Head(pooled, train)
					out = floats(h.MustSelect(1, 0, true))
				})
				seen := map[float32]int{}
				for _, v := range out {
					seen[v]++
				}
				want := map[float32]bool{1: true}
				if train && p > 0 {
					want = map[float32]bool{0: true, 2: true}
				}
				if len(seen) != len(want) {
					t.Errorf("backbone_dropout %v, train %v: fc saw %v, want only %v", p, train, seen, want)
				}
				for v := range seen {
					if !want[v] {
						t.Errorf("backbone_dropout %v, train %v: fc saw %v, want only %v", p, train, seen, want)
						break
					}
				}
			}
			pooled.MustDrop()
		}
	})
}
