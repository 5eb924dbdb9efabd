package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
)

// pyExplain: the baseline captioner (frozen torchvision Inception-v3 at 75 px,
// fc, 1-layer LSTM) from a seed, and Captum's IntegratedGradients (default
// Gauss-Legendre, 16 steps, black baseline) and Saliency of one word's logit,
// teacher-forced on a fixed caption, in eval mode.
const pyExplain = `
import sys, json, numpy as np, torch
from captum.attr import IntegratedGradients, Saliency
import refmodels
d = sys.argv[1]
V, E, H = 30, 16, 24
torch.manual_seed(0)
m = refmodels.baseline(V, E, H)
inc, dec = m.encoderCNN.inception, m.decoderRNN
# BatchNorm statistics from a batch, so that the random network neither
# vanishes nor explodes (else every attribution is ~0 and the test is empty).
x0 = np.random.default_rng(9).uniform(-1, 1, (8, 3, 75, 75)).astype(np.float32)
refmodels.calibrate_bn(inc, torch.from_numpy(x0), reset=False)
torch.save(m.state_dict(), d + "/cap.pth")
m.eval()
cap = torch.tensor([1, 7, 12, 5, 9, 2])
t = 2  # the word cap[3] at step 2
def f(x):
    tok = cap.unsqueeze(0).expand(x.shape[0], -1)
    return dec.teacher(torch.relu(inc.fc(refmodels.pooled(inc, x))), tok)[t, :, cap[t + 1]]
x = torch.from_numpy(np.random.default_rng(3).uniform(-1, 1, (1, 3, 75, 75)).astype(np.float32))
np.save(d + "/x.npy", x.numpy())
ig, delta = IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), n_steps=16,
                                            return_convergence_delta=True)
sal = Saliency(f).attribute(x)
np.save(d + "/ig.npy", ig.detach().numpy()); np.save(d + "/sal.npy", sal.detach().numpy())
from captum.attr import LayerGradCam, Occlusion
x2 = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (1, 3, 139, 139)).astype(np.float32))
np.save(d + "/x2.npy", x2.numpy())
cam = LayerGradCam(f, inc.Mixed_7c).attribute(x2, relu_attributions=True)
np.save(d + "/cam.npy", cam.detach().numpy())
occ = Occlusion(f).attribute(x2, sliding_window_shapes=(3, 30, 30), strides=(3, 15, 15), baselines=0)
np.save(d + "/occ.npy", occ.detach().numpy())
json.dump({"delta": delta.item(), "fx": f(x).item(), "fb": f(torch.zeros_like(x)).item(), "sum": ig.sum().item()},
          open(d + "/ref.json", "w"))
`

func TestExplanationsMatchCaptum(t *testing.T) {
	var ref struct{ Delta, FX, FB, Sum float64 }
	dir := pythonReference(t, pyExplain, &ref)
	run(t, func() {
		m, err := NewCaptioner(Config{VocabSize: 30, EmbedSize: 16, HiddenSize: 24, NumLayers: 1}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadFile(filepath.Join(dir, "cap.pth")); err != nil {
			t.Fatal(err)
		}
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		zero := x.MustZerosLike(false)
		caption := []int64{1, 7, 12, 5, 9, 2}
		ig, err := m.IntegratedGradients(x, zero, caption, 2, 16)
		if err != nil {
			t.Fatal(err)
		}
		sal, err := m.Saliency(x, caption, 2)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ig.FX-ig.FBaseline) < 1e-3 {
			t.Fatalf("f(x) - f(0) = %.3g: the test model is too flat to test anything", ig.FX-ig.FBaseline)
		}
		matchesCaptum(t, "ig", ig.Values, filepath.Join(dir, "ig.npy"))
		matchesCaptum(t, "sal", sal.Values, filepath.Join(dir, "sal.npy"))
		// Completeness: the attributions add up to f(x) - f(baseline).
		if math.Abs(ig.FX-ref.FX) > 1e-4 || math.Abs(ig.FBaseline-ref.FB) > 1e-4 {
			t.Errorf("f(x) %.6f / f(0) %.6f, Captum's %.6f / %.6f", ig.FX, ig.FBaseline, ref.FX, ref.FB)
		}
		gap := ig.Sum - (ig.FX - ig.FBaseline)
		t.Logf(
			"completeness: sum %.6f, f(x) - f(0) = %.6f, gap %.3g (Captum's delta %.3g)",
			ig.Sum,
			ig.FX-ig.FBaseline,
			gap,
			ref.Delta,
		)
		if math.Abs(gap-ref.Delta) > 1e-4 {
			t.Errorf("completeness gap %.6g, Captum's %.6g", gap, ref.Delta)
		}
		x.MustDrop()
		zero.MustDrop()

		// Grad-CAM on Mixed_7c (3 x 3 at 139 px) and occlusion (30 px windows, stride 15).
		x2 := npyTensor(t, filepath.Join(dir, "x2.npy"))
		zero2 := x2.MustZerosLike(false)
		cam, _, err := m.GradCAM(x2, caption, 2)
		if err != nil {
			t.Fatal(err)
		}
		occ, err := m.Occlusion(x2, zero2, caption, 2, 30, 15, 16)
		if err != nil {
			t.Fatal(err)
		}
		matchesCaptum(t, "cam", cam, filepath.Join(dir, "cam.npy"))
		matchesCaptum(t, "occ", occ.Values, filepath.Join(dir, "occ.npy"))
		x2.MustDrop()
		zero2.MustDrop()
	})
}

func TestLegendreGauss(t *testing.T) {
	a, w := LegendreGauss(5)
	sum, m2 := 0.0, 0.0
	for i := range a {
		sum += w[i]
		m2 += w[i] * a[i] * a[i] * a[i] * a[i]
	}
	// Exact for polynomials up to degree 9: integral of x^4 over [0, 1] is 1/5.
	if math.Abs(sum-1) > 1e-12 || math.Abs(m2-0.2) > 1e-12 || a[0] >= a[1] {
		t.Errorf("nodes %v weights %v", a, w)
	}
}
