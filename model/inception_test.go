package model

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// makeTorchvisionInception saves torchvision 0.16's inception_v3(weights=None,
// aux_logits=False, init_weights=True) from a fixed seed, with pooled features
// (eval mode) of fixed inputs, transform_input off and on.
func makeTorchvisionInception(t *testing.T, dir string) {
	t.Helper()
	testutil.RunPython(t, `
import sys, numpy as np, torch, torchvision
d = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
# Make BatchNorm statistics non-trivial so that eval mode is really tested.
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.8, 1.2); mod.bias.uniform_(-0.1, 0.1)
torch.save(m.state_dict(), d + "/inception.pth")
# The published inception_v3_google-*.pth carries AuxLogits.* and a 1000-class fc.
torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
           d + "/with_aux.pth")
m.fc = torch.nn.Identity()
m.eval()
rng = np.random.default_rng(0)
for name, size in (("x299", 299), ("x75", 75)):
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    np.save(d + "/%s.npy" % name, x)
    with torch.no_grad():
        for ti in (False, True):
            m.transform_input = ti
            np.save(d + "/%s_feat_ti%d.npy" % (name, ti), m(torch.from_numpy(x)).numpy())
`, dir)
}

func TestInceptionMatchesTorchvision(t *testing.T) {
	dir := t.TempDir()
	makeTorchvisionInception(t, dir)
	run(t, func() {
		vs := nn.NewVarStore(gotch.CPU)
		enc := NewInception(vs.Root(), false, false)
		tensors, err := LoadTensors(filepath.Join(dir, "inception.pth"))
		if err != nil {
			t.Fatal(err)
		}
		notes, err := LoadInto(vs, tensors, LoadSpec{File: "inception.pth", Ignore: []string{"AuxLogits.", "fc."}})
		DropAll(tensors)
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) != 1 || !strings.Contains(notes[0], "fc.") {
			t.Errorf("notes %v, want one about the ignored ImageNet fc", notes)
		}
		if n := len(vs.Variables()); n != 566-2 {
			t.Errorf("%d variables, torchvision's state_dict has 564 without fc", n)
		}
		// Eval without gradient folds each BatchNorm into its conv: float32
		// rounding then differs from torchvision's conv -> BN (relative ~1e-6);
		// unfolded, the same ops in the same order agree exactly.
		defer func() { useFolding = true }()
		for _, name := range []string{"x299", "x75"} {
			x := npyTensor(t, filepath.Join(dir, name+".npy"))
			for ti, suffix := range []string{"_feat_ti0.npy", "_feat_ti1.npy"} {
				for _, fold := range []bool{true, false} {
					useFolding = fold
					tol := map[bool]float64{true: 1e-5, false: 1e-9}[fold]
					enc.TransformInput = ti == 1
					var f *ts.Tensor
					torch.NoGrad(func() { f = enc.Pooled(x, false) })
					d := maxRelDiff(t, f, filepath.Join(dir, name+suffix))
					t.Logf(
						"%s transform_input=%v folded=%v: pooled features max |go - torchvision| / max |torchvision| = %.3g",
						name,
						ti == 1,
						fold,
						d,
					)
					if d > tol {
						t.Errorf(
							"%s transform_input=%v folded=%v: relative max |diff| %.3g > %g",
							name,
							ti == 1,
							fold,
							d,
							tol,
						)
					}
					f.MustDrop()
				}
			}
			if name == "x299" {
				var mp *ts.Tensor
				torch.NoGrad(func() { mp = enc.Map(x, false) })
				if got := mp.MustSize(); len(got) != 4 || got[0] != 2 || got[1] != 2048 || got[2] != 8 || got[3] != 8 {
					t.Errorf("Mixed_7c map at 299x299 has shape %v, want [2 2048 8 8]", got)
				}
				mp.MustDrop()
			}
			x.MustDrop()
		}
	})
}

func TestLoadIgnoresAuxLogitsWithANote(t *testing.T) {
	dir := t.TempDir()
	makeTorchvisionInception(t, dir)
	run(t, func() {
		_, _, notes, err := LoadInception(filepath.Join(dir, "with_aux.pth"), true, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) != 2 || !strings.Contains(notes[0], "AuxLogits.* entr(ies) ignored") ||
			!strings.Contains(notes[1], "fc.* entr(ies) ignored") {
			t.Errorf("notes = %q", notes)
		}
	})
}

// TestCaptionerLoadBackbone loads torchvision's file into a captioner: the
// backbone gives torchvision's features and the captioner's own head is kept.
func TestCaptionerLoadBackbone(t *testing.T) {
	dir := t.TempDir()
	makeTorchvisionInception(t, dir)
	run(t, func() {
		m, err := NewCaptioner(Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		vars := m.VS.Variables()
		fc := vars[BackbonePrefix+"fc.weight"]
		before := torch.Float32s(&fc)
		notes, err := m.LoadBackbone(filepath.Join(dir, "with_aux.pth"))
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) != 2 || !strings.Contains(notes[0], "AuxLogits.*") || !strings.Contains(notes[1], "fc.*") {
			t.Errorf("notes %q", notes)
		}
		if got := torch.Float32s(&fc); !equalF(before, got) || len(got) != 8*2048 {
			t.Error("loading the backbone changed the captioner's own fc head")
		}
		if _, err := m.LoadBackbone(filepath.Join(dir, "inception.pth")); err != nil {
			t.Fatal(err)
		}
		x := npyTensor(t, filepath.Join(dir, "x75.npy"))
		f := m.Features(x, false)
		if d := maxRelDiff(t, f, filepath.Join(dir, "x75_feat_ti0.npy")); d > 1e-5 {
			t.Errorf("captioner backbone features differ from torchvision's by %.3g", d)
		}
		f.MustDrop()
		x.MustDrop()
	})
}

// TestExtractFeaturesFile runs the features command's library call on the .npy
// input and compares the written .npy with torchvision's.
func TestExtractFeaturesFile(t *testing.T) {
	dir := t.TempDir()
	makeTorchvisionInception(t, dir)
	run(t, func() {
		out := filepath.Join(dir, "f.npy")
		for ti, ref := range []string{"x299_feat_ti0.npy", "x299_feat_ti1.npy"} {
			if _, err := ExtractFeatures(filepath.Join(dir, "inception.pth"), filepath.Join(dir, "x299.npy"), out, ti == 1, 1,
				gotch.CPU); err != nil {
				t.Fatal(err)
			}
			got, shape, err := torch.ReadNpy(out)
			if err != nil {
				t.Fatal(err)
			}
			f := torch.FromFloat32s(got, shape, gotch.CPU)
			if d := maxRelDiff(t, f, filepath.Join(dir, ref)); d > 1e-5 {
				t.Errorf("transform_input=%v: relative max |diff| %.3g", ti == 1, d)
			}
			f.MustDrop()
		}
		if _, err := ExtractFeatures(filepath.Join(dir, "inception.pth"), filepath.Join(dir, "nope.npy"), out, false, 1,
			gotch.CPU); err == nil ||
			!strings.Contains(err.Error(), "nope.npy: does not exist") {
			t.Errorf("missing input: %v", err)
		}
	})
}

// TestFoldedBatchNormFollowsChanges: the folded conv of an eval-mode layer is
// cached, and must be recomputed when what it was folded from changes: the
// running statistics (a train-mode forward updates them), the BatchNorm
// weight (an optimiser step), or the conv weight (loading weights). After
// each change the folded and the unfolded layer must agree again; a stale
// fold would not. With grad mode on, nothing is folded.
func TestFoldedBatchNormFollowsChanges(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(4)
		vs := nn.NewVarStore(gotch.CPU)
		c := newBasicConv(vs.Root(), 3, 8, 3, 3, 1, 1, 1, 1, trainability{all: true, scale: true})
		x := ts.MustRandn([]int64{2, 3, 9, 9}, gotch.Float, gotch.CPU)
		defer x.MustDrop()
		defer func() { useFolding = true }()
		check := func(when string) {
			t.Helper()
			var a, b *ts.Tensor
			torch.NoGrad(func() {
				useFolding = false
				a = c.forward(x, false)
				useFolding = true
				b = c.forward(x, false)
			})
			if c.fold.out == nil {
				t.Fatalf("%s: eval without gradient did not fold", when)
			}
			av, bv := torch.Float32s(a), torch.Float32s(b)
			worst, scale := 0.0, 1.0
			for i := range av {
				worst = math.Max(worst, math.Abs(float64(av[i]-bv[i])))
				scale = math.Max(scale, math.Abs(float64(av[i])))
			}
			if worst/scale > 1e-5 {
				t.Errorf("%s: folded and unfolded differ by %.3g (relative)", when, worst/scale)
			}
			a.MustDrop()
			b.MustDrop()
		}
		check("fresh layer")
		y := c.forward(x, true) // batch statistics; updates running mean and var
		y.MustDrop()
		check("after a train-mode forward")
		torch.NoGrad(func() {
			r := ts.MustRand([]int64{8}, gotch.Float, gotch.CPU)
			c.bnW.Copy_(r)
			r.MustDrop()
		})
		check("after changing the BatchNorm weight")
		torch.NoGrad(func() {
			r := ts.MustRandn(c.w.MustSize(), gotch.Float, gotch.CPU)
			c.w.Copy_(r)
			r.MustDrop()
		})
		check("after loading conv weights")
		// Grad mode on: the unfolded path, so that gradients reach w and the
		// BatchNorm parameters.
		fw := c.fold.out[0]
		y = c.forward(x, false)
		s := y.MustSum(gotch.Float, true)
		s.MustBackward()
		s.MustDrop()
		if g := c.w.MustGrad(false); !g.MustDefined() {
			t.Error("no gradient reached the conv weight in eval mode with grad on")
		}
		if c.fold.out == nil || c.fold.out[0] != fw {
			t.Error("eval with grad on and trainable weights refolded")
		}
	})
}
