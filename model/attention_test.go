package model

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// The PyTorch reference of the attention decoder (Show, Attend and Tell in
// the layout of the widely used PyTorch implementation, with this project's
// teacher-forcing alignment) on a frozen torchvision Inception-v3 at 139 px
// (a 3 x 3 Mixed_7c map), dropout 0. It saves the weights, logits, attention
// weights, the loss with alpha_c = 1, every gradient of the first step, and the
// parameters after three Adam steps.
//
// The regime is live, and the reference asserts it: the backbone's BatchNorm
// statistics come from the batch (uncalibrated, the random network's map
// reaches ~1e8 and the softmax puts all weight on one place, so the attention
// layers get no gradient), no word's attention is one-hot, and every trainable
// tensor's gradient is far from zero.
// pySATBatch is the start of the attention references: a random Show,
// Attend and Tell on torchvision's Inception-v3 (weights in sat.pth), a batch
// of 3 images at 139 px and captions (x.npy, tok.npy), and BatchNorm
// statistics from that batch (calibrate_bn: the network is live).
const pySATBatch = `
import sys, json, numpy as np, torch
import refmodels
d = sys.argv[1]
V, E, H, A, D, B, T = 30, 16, 24, 20, 2048, 3, 6
torch.manual_seed(0)
m = refmodels.show_attend_tell(V, E, H, A, D)
inc, dec = m.encoderCNN.inception, m.decoderRNN
rng = np.random.default_rng(1)
x = rng.standard_normal((B, 3, 139, 139)).astype(np.float32)
tok = np.zeros((B, T), np.int64)
for b, n in enumerate([6, 4, 5]):
    tok[b, 0], tok[b, n - 1] = 1, 2
    tok[b, 1:n - 1] = rng.integers(4, V, n - 2)
np.save(d + "/x.npy", x); np.save(d + "/tok.npy", tok.astype(np.float32))
x, tok = torch.from_numpy(x), torch.from_numpy(tok)
refmodels.calibrate_bn(inc, x)  # BatchNorm statistics from the batch
torch.save(m.state_dict(), d + "/sat.pth")
`

const pyAttention = pySATBatch + `
for p in inc.parameters():
    p.requires_grad_(False)
inc.eval()
feats = {}
inc.Mixed_7c.register_forward_hook(lambda mod, i, o: feats.__setitem__("map", o))
inc.Mixed_5d.register_forward_hook(lambda mod, i, o: feats.__setitem__("m5d", o))
inc.Mixed_6e.register_forward_hook(lambda mod, i, o: feats.__setitem__("m6e", o))
with torch.no_grad():
    inc(x)
np.save(d + "/Mixed_5d.npy", feats["m5d"].numpy()); np.save(d + "/Mixed_6e.npy", feats["m6e"].numpy())
enc = feats["map"].flatten(2).transpose(1, 2)  # B x P x D
def forward():
    return dec.teacher(enc, tok)
def loss_of(logits, alphas):
    return refmodels.caption_loss(logits, alphas, tok, alpha_c=1.0)
logits, alphas = forward()
np.save(d + "/logits.npy", logits.detach().numpy()); np.save(d + "/alphas.npy", alphas.detach().numpy())
peak = alphas.max().item()
assert peak < 0.9, "attention is (nearly) one-hot: max weight %.3f" % peak
params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
opt = torch.optim.Adam([p for _, p in params], lr=1e-3)
losses = []
for step in range(3):
    opt.zero_grad()
    loss = loss_of(*forward())
    losses.append(loss.item())
    loss.backward()
    for n, p in params:
        # full_att's bias shifts every place's score alike: softmax ignores it (its gradient is 0 by construction)
        if step == 0 and n != "decoderRNN.attention.full_att.bias":
            assert p.grad.abs().max() > 1e-5 * max(1.0, p.abs().max().item()), "gradient of %s is ~0" % n
        np.save(d + "/grad%d_" % (step + 1) + n + ".npy", p.grad.numpy())
    opt.step()
for n, p in params:
    np.save(d + "/step3_" + n + ".npy", p.detach().numpy())
json.dump({"losses": losses, "trainable": [n for n, _ in params], "peak_alpha": peak}, open(d + "/ref.json", "w"))
`

func TestAttentionMatchesPyTorch(t *testing.T) {
	var ref struct {
		Losses    []float64 `json:"losses"`
		Trainable []string  `json:"trainable"`
		PeakAlpha float64   `json:"peak_alpha"`
	}
	dir := pythonReference(t, pyAttention, &ref)
	run(t, func() {
		// Unfolded BatchNorm, as torchvision runs it (see TestCaptionerMatchesPyTorch).
		prev := useFolding
		useFolding = false
		defer func() { useFolding = prev }()
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
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		tok := npyTensor(t, filepath.Join(dir, "tok.npy")).MustTotype(gotch.Int64, true)
		// The earlier layers a decoder can read instead (feature_layer).
		for _, layer := range []Layer{Mixed5d, Mixed6e} {
			var f *ts.Tensor
			torch.NoGrad(func() { f = m.Backbone.MapAt(x, layer, false) })
			if d := maxRelDiff(t, f, filepath.Join(dir, string(layer)+".npy")); d > 1e-5 {
				t.Errorf("%s map: max |go - torchvision| / max |torchvision| = %.3g", layer, d)
			}
			f.MustDrop()
		}
		feat := m.Features(x, false)
		if sz := feat.MustSize(); fmt.Sprint(sz) != "[3 9 2048]" {
			t.Fatalf("map rows %v, want [3 9 2048]", sz)
		}
		logits, alphas := m.DecodeFeatures(feat, tok, false)
		for name, got := range map[string]*ts.Tensor{"logits": logits, "alphas": alphas} {
			if d := maxDiff(t, got, filepath.Join(dir, name+".npy")); d > 1e-5 {
				t.Errorf("%s: max |go - pytorch| = %.3g > 1e-5", name, d)
			} else {
				t.Logf("%s: max |go - pytorch| = %.3g", name, d)
			}
		}
		// Every word's weights are a distribution over the 9 positions.
		ws, err := m.AttentionWeights(feat, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 3 || len(ws[0]) != 5 || len(ws[0][0]) != 9 {
			t.Fatalf("attention weights shape %d x %d x %d", len(ws), len(ws[0]), len(ws[0][0]))
		}
		sum := 0.0
		for _, v := range ws[1][2] {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("weights sum to %v", sum)
		}
		logits.MustDrop()
		alphas.MustDrop()

		opt := NewAdam(m.VS, 0)
		names := append([]string(nil), opt.Names...)
		want := append([]string(nil), ref.Trainable...)
		sort.Strings(names)
		sort.Strings(want)
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Fatalf("trainable\n got %v\nwant %v", names, want)
		}
		vars := m.VS.Variables()
		start := map[string][]float32{}
		grads := map[string][2][][]float32{} // per parameter: our and PyTorch's gradient at each step
		for _, n := range names {
			v := vars[n]
			start[n] = floats(&v)
		}
		for step := 0; step < 3; step++ {
			opt.ZeroGrad()
			l, a := m.DecodeFeatures(feat, tok, true)
			loss := LossAttention(l, a, tok, 1.0)
			got := torch.Item(loss)
			if math.Abs(got-ref.Losses[step]) > 1e-5 {
				t.Errorf("step %d: loss %.7f, PyTorch %.7f", step, got, ref.Losses[step])
			}
			loss.MustBackward()
			for _, n := range names {
				v := vars[n]
				g := v.MustGrad(false)
				want, _, err := torch.ReadNpy(filepath.Join(dir, fmt.Sprintf("grad%d_%s.npy", step+1, n)))
				if err != nil {
					t.Fatal(err)
				}
				grads[n] = [2][][]float32{append(grads[n][0], floats(g)), append(grads[n][1], want)}
				g.MustDrop()
			}
			worst, worstName := worstGradDiff(
				t,
				m.VS.Variables(),
				names,
				func(n string) string { return filepath.Join(dir, fmt.Sprintf("grad%d_%s.npy", step+1, n)) },
			)
			if worst > 1e-4 {
				t.Errorf("step %d: gradient of %s differs from PyTorch's by %.3g (relative)", step+1, worstName, worst)
			}
			if step == 0 {
				t.Logf(
					"first step's gradients: max |go - pytorch| / max |pytorch| = %.3g (%s); largest attention weight %.3f",
					worst,
					worstName,
					ref.PeakAlpha,
				)
			}
			opt.Step(1e-3)
			loss.MustDrop()
			l.MustDrop()
			a.MustDrop()
		}
		// full_att's bias has a zero gradient by construction (softmax ignores
		// a shift); what Adam does with the rounding noise there differs in
		// sign between the two sides, so it is left out.
		var compared []string
		for _, n := range names {
			if n != "decoderRNN.attention.full_att.bias" {
				compared = append(compared, n)
			}
		}
		worst, worstName := worstParamDiff(
			t,
			m.VS.Variables(),
			compared,
			func(n string) string { return filepath.Join(dir, "step3_"+n+".npy") },
		)
		t.Logf("after 3 Adam steps: max |go - pytorch| over %d parameters = %.3g (%s)", len(compared), worst, worstName)
		// Each element may differ by what Adam makes of the two sides' gradient
		// differences (large only where a gradient is near Adam's eps) and the
		// parameter's last bits; nothing more.
		for _, n := range compared {
			v := vars[n]
			got := floats(&v)
			want, _, err := torch.ReadNpy(filepath.Join(dir, "step3_"+n+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			ours := adamReplay(start[n], grads[n][0], 1e-3, opt.Eps)
			theirs := adamReplay(start[n], grads[n][1], 1e-3, opt.Eps)
			for i := range got {
				allow := math.Abs(ours[i]-theirs[i]) + 1e-7 + 4*ulp(want[i])
				if d := math.Abs(float64(got[i]) - float64(want[i])); d > allow {
					t.Errorf("%s[%d] after 3 Adam steps: %.8g, PyTorch %.8g; the gradients allow %.3g", n, i, got[i],
						want[i], allow)
					break
				}
			}
		}
		// Greedy decoding returns each word's weights, the same as teacher
		// forcing on the decoded caption gives.
		hs, gw, err := m.GreedyAttention(feat, 8)
		if err != nil {
			t.Fatal(err)
		}
		for r, h := range hs {
			ids := h.IDs()
			one := feat.MustNarrow(0, int64(r), 1, false)
			tt := torch.FromInt64s(ids, []int64{1, int64(len(ids))}, gotch.CPU)
			tw, err := m.AttentionWeights(one, tt)
			one.MustDrop()
			tt.MustDrop()
			if err != nil {
				t.Fatal(err)
			}
			if len(gw[r]) == 0 || len(gw[r]) > len(tw[0]) {
				t.Fatalf("image %d: %d decoded steps, %d teacher-forced", r, len(gw[r]), len(tw[0]))
			}
			for i := range gw[r] {
				for p := range gw[r][i] {
					if d := math.Abs(float64(gw[r][i][p] - tw[0][i][p])); d > 1e-6 {
						t.Fatalf(
							"image %d word %d place %d: decoding %.7f, teacher forcing %.7f",
							r,
							i,
							p,
							gw[r][i][p],
							tw[0][i][p],
						)
					}
				}
			}
		}
		// Greedy and beam decoding run on the attention decoder.
		st := m.StepperFromFeatures(feat)
		hyps := Greedy(st, 3, 8)
		CloseStepper(st)
		if len(hyps) != 3 {
			t.Errorf("greedy gave %d captions", len(hyps))
		}
		st = m.StepperFromFeatures(feat)
		beams := Beam(st, 3, 3, 8, 1)
		CloseStepper(st)
		if len(beams) != 3 {
			t.Errorf("beam gave %d captions", len(beams))
		}
		feat.MustDrop()
		x.MustDrop()
		tok.MustDrop()
	})
}
