package model

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
)

// pyExplainAttention: Show, Attend and Tell (the layout of pyAttention) on a
// frozen torchvision Inception-v3 at 139 px with BatchNorm statistics from a
// batch, and Captum's IntegratedGradients (16 steps, zero baseline),
// Saliency, LayerGradCam on Mixed_7c and Occlusion (30 px windows, stride 15)
// of two words' logits of a fixed caption, teacher-forced, eval mode, on two
// images.
const pyExplainAttention = `
import sys, json, numpy as np, torch
from captum.attr import IntegratedGradients, Saliency, LayerGradCam, Occlusion
import refmodels
d = sys.argv[1]
V, E, H, A, D = 30, 16, 24, 20, 2048
torch.manual_seed(0)
m = refmodels.show_attend_tell(V, E, H, A, D)
inc, dec = m.encoderCNN.inception, m.decoderRNN
x0 = np.random.default_rng(9).uniform(-1, 1, (8, 3, 139, 139)).astype(np.float32)
refmodels.calibrate_bn(inc, torch.from_numpy(x0), reset=False)
torch.save(m.state_dict(), d + "/att.pth")
m.eval()
feats = {}
inc.Mixed_7c.register_forward_hook(lambda mod, i, o: feats.__setitem__("map", o))
cap = torch.tensor([1, 7, 12, 5, 9, 2])
def logit(t):
    def f(x):
        inc(x)
        enc = feats["map"].flatten(2).transpose(1, 2)
        st = dec.start(enc)
        tok = cap.unsqueeze(0).expand(x.shape[0], -1)
        for s in range(t + 1):
            logits, _ = dec.step(st, tok[:, s])
        return logits[:, cap[t + 1]]
    return f
out = {}
for i, seed in enumerate((4, 5)):
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (1, 3, 139, 139)).astype(np.float32))
    np.save(d + "/x%d.npy" % i, x.numpy())
    for t in (1, 3):
        f = logit(t)
        ig, delta = IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), n_steps=16,
                                                    return_convergence_delta=True)
        np.save(d + "/ig_%d_%d.npy" % (i, t), ig.detach().numpy())
        np.save(d + "/sal_%d_%d.npy" % (i, t), Saliency(f).attribute(x).detach().numpy())
        cam = LayerGradCam(f, inc.Mixed_7c).attribute(x, relu_attributions=True)
        np.save(d + "/cam_%d_%d.npy" % (i, t), cam.detach().numpy())
        occ = Occlusion(f).attribute(x, sliding_window_shapes=(3, 30, 30), strides=(3, 15, 15), baselines=0)
        np.save(d + "/occ_%d_%d.npy" % (i, t), occ.detach().numpy())
        out["%d_%d" % (i, t)] = {"delta": delta.item(), "fx": f(x).item(), "fb": f(torch.zeros_like(x)).item()}
json.dump(out, open(d + "/ref.json", "w"))
`

// TestAttentionExplanationsMatchCaptum: Integrated Gradients, Saliency,
// Grad-CAM and occlusion of the attention decoder's words equal Captum's on
// the same model, for two images and two words each (completeness gaps too).
func TestAttentionExplanationsMatchCaptum(t *testing.T) {
	var ref map[string]struct{ Delta, FX, FB float64 }
	dir := pythonReference(t, pyExplainAttention, &ref)
	run(t, func() {
		m, err := NewCaptioner(
			Config{
				VocabSize:    30,
				EmbedSize:    16,
				HiddenSize:   24,
				NumLayers:    1,
				Decoder:      DecoderAttention,
				AttentionDim: 20,
			},
			gotch.CPU,
		)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(filepath.Join(dir, "att.pth")); err != nil {
			t.Fatal(err)
		}
		caption := []int64{1, 7, 12, 5, 9, 2}
		for i := 0; i < 2; i++ {
			x := npyTensor(t, filepath.Join(dir, fmt.Sprintf("x%d.npy", i)))
			zero := x.MustZerosLike(false)
			for _, w := range []int{1, 3} {
				key := fmt.Sprintf("%d_%d", i, w)
				r := ref[key]
				ig, err := m.IntegratedGradients(x, zero, caption, w, 16)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(ig.FX-ig.FBaseline) < 1e-3 {
					t.Fatalf(
						"image %d word %d: f(x) - f(0) = %.3g: too flat to test anything",
						i,
						w,
						ig.FX-ig.FBaseline,
					)
				}
				matchesCaptum(t, "ig "+key, ig.Values, filepath.Join(dir, "ig_"+key+".npy"))
				if math.Abs(ig.FX-r.FX) > 1e-4 || math.Abs(ig.FBaseline-r.FB) > 1e-4 {
					t.Errorf("%s: f(x) %.6f / f(0) %.6f, Captum's %.6f / %.6f", key, ig.FX, ig.FBaseline, r.FX, r.FB)
				}
				// The gap sums ~58,000 attributions, each within ~1e-6 of Captum's:
				// compare it to 1e-5 of their absolute sum.
				l1 := 0.0
				for _, v := range ig.Values {
					l1 += math.Abs(float64(v))
				}
				gap := ig.Sum - (ig.FX - ig.FBaseline)
				t.Logf("%s: completeness gap %.6g, Captum's %.6g (sum |attributions| %.3g)", key, gap, r.Delta, l1)
				if math.Abs(gap-r.Delta) > 1e-5*math.Max(1, l1) {
					t.Errorf("%s: completeness gap %.6g, Captum's %.6g", key, gap, r.Delta)
				}
				sal, err := m.Saliency(x, caption, w)
				if err != nil {
					t.Fatal(err)
				}
				matchesCaptum(t, "sal "+key, sal.Values, filepath.Join(dir, "sal_"+key+".npy"))
				cam, _, err := m.GradCAM(x, caption, w)
				if err != nil {
					t.Fatal(err)
				}
				matchesCaptum(t, "cam "+key, cam, filepath.Join(dir, "cam_"+key+".npy"))
				occ, err := m.Occlusion(x, zero, caption, w, 30, 15, 16)
				if err != nil {
					t.Fatal(err)
				}
				matchesCaptum(t, "occ "+key, occ.Values, filepath.Join(dir, "occ_"+key+".npy"))
			}
			x.MustDrop()
			zero.MustDrop()
		}
	})
}
