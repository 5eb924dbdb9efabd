package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// run executes a test body on a locked OS thread.
func run(t *testing.T, fn func()) {
	t.Helper()
	if err := torch.Run(func() error { fn(); return nil }); err != nil {
		if pe, ok := err.(*torch.PanicError); ok {
			t.Fatalf("%v\n%s", pe, pe.Stack)
		}
		t.Fatal(err)
	}
}

func npyTensor(t *testing.T, path string) *ts.Tensor {
	t.Helper()
	d, shape, err := torch.ReadNpy(path)
	if err != nil {
		t.Fatal(err)
	}
	return ts.MustOfSlice(d).MustView(shape, true)
}

func floats(x *ts.Tensor) []float32 { return torch.Float32s(x) }

// maxDiff compares a tensor with a reference .npy of the same shape.
func maxDiff(t *testing.T, got *ts.Tensor, refPath string) float64 {
	t.Helper()
	want, shape, err := torch.ReadNpy(refPath)
	if err != nil {
		t.Fatal(err)
	}
	g := floats(got)
	if len(g) != len(want) {
		t.Fatalf(
			"%s: got %d values (shape %v), reference has %d (shape %v)",
			filepath.Base(refPath),
			len(g),
			got.MustSize(),
			len(want),
			shape,
		)
	}
	m := 0.0
	for i := range g {
		m = math.Max(m, math.Abs(float64(g[i]-want[i])))
	}
	return m
}

// maxRelDiff is maxDiff over the reference's largest magnitude (at least 1):
// the test backbones' random weights without trained BatchNorm statistics blow
// activations up to ~1e8, where float32 rounding alone moves values by ~1e2.
func maxRelDiff(t *testing.T, got *ts.Tensor, refPath string) float64 {
	t.Helper()
	want, _, err := torch.ReadNpy(refPath)
	if err != nil {
		t.Fatal(err)
	}
	scale := 1.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	return maxDiff(t, got, refPath) / scale
}

// pythonReference runs a reference script with a temporary folder as its
// argument and decodes the ref.json it writes there into ref.
func pythonReference(t *testing.T, script string, ref any) string {
	t.Helper()
	dir := t.TempDir()
	testutil.RunPython(t, script, dir)
	b, err := os.ReadFile(filepath.Join(dir, "ref.json"))
	if err == nil {
		err = json.Unmarshal(b, ref)
	}
	if err != nil {
		t.Fatalf("reference ref.json: %v", err)
	}
	return dir
}

// worstGradDiff compares the named variables' gradients with the reference
// .npy files refPath(name) names, relative to each reference's largest value,
// and returns the largest difference and where it is.
func worstGradDiff(
	t *testing.T,
	vs map[string]ts.Tensor,
	names []string,
	refPath func(string) string,
) (float64, string) {
	t.Helper()
	worst, worstName := 0.0, ""
	for _, n := range names {
		v := vs[n]
		g := v.MustGrad(false)
		if d := maxRelDiff(t, g, refPath(n)); d > worst {
			worst, worstName = d, n
		}
		g.MustDrop()
	}
	return worst, worstName
}

// worstParamDiff compares the named variables with the reference .npy files
// refPath(name) names and returns the largest difference and where it is.
func worstParamDiff(
	t *testing.T,
	vs map[string]ts.Tensor,
	names []string,
	refPath func(string) string,
) (float64, string) {
	t.Helper()
	worst, worstName := 0.0, ""
	for _, n := range names {
		v := vs[n]
		if d := maxDiff(t, &v, refPath(n)); d > worst {
			worst, worstName = d, n
		}
	}
	return worst, worstName
}

// matchesCaptum checks attributions against Captum's (.npy): same count, not
// all ~0, and no value off by more than 1e-4 of the largest.
func matchesCaptum(t *testing.T, name string, got []float32, refPath string) {
	t.Helper()
	want, _, err := torch.ReadNpy(refPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%s: %d values, Captum %d", name, len(got), len(want))
	}
	worst, scale := 0.0, 0.0
	for i, v := range want {
		worst = math.Max(worst, math.Abs(float64(got[i]-v)))
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	t.Logf("%s: max |go - captum| = %.3g (largest attribution %.3g)", name, worst, scale)
	if scale < 1e-6 {
		t.Errorf("%s: every attribution is ~0", name)
	}
	if worst > 1e-4*scale {
		t.Errorf("%s differs from Captum's by %.3g (largest attribution %.3g)", name, worst, scale)
	}
}

// greedyAndBeam decodes pooled features greedily and with beam 3 (alpha 1).
func greedyAndBeam(m *Captioner, pooled *ts.Tensor, rows, maxLen int) (g, b []Hypothesis) {
	s := m.StepperFromFeatures(pooled)
	g = Greedy(s, rows, maxLen)
	CloseStepper(s)
	s = m.StepperFromFeatures(pooled)
	b = Beam(s, rows, 3, maxLen, 1)
	CloseStepper(s)
	return g, b
}

// liveTensorsAround returns the live tensor handles before and after fn, which
// runs with Go's collector off: earlier garbage's finalizers run first, and a
// handle fn forgets to drop cannot then be rescued by one.
func liveTensorsAround(fn func()) (before, after int) {
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	before = torch.LiveTensors()
	fn()
	return before, torch.LiveTensors()
}

// adamReplay replays torch.optim.Adam (betas 0.9, 0.999, no weight decay) in
// float64 from p0 over a sequence of gradients and returns the parameters.
// Replayed on each side's gradients, the two results' difference is what the
// gradients' own difference makes of the parameters.
func adamReplay(p0 []float32, grads [][]float32, lr, eps float64) []float64 {
	p := make([]float64, len(p0))
	m := make([]float64, len(p0))
	v := make([]float64, len(p0))
	for i, x := range p0 {
		p[i] = float64(x)
	}
	for k, g := range grads {
		bc1, bc2 := 1-math.Pow(0.9, float64(k+1)), 1-math.Pow(0.999, float64(k+1))
		for i, gi := range g {
			m[i] = 0.9*m[i] + 0.1*float64(gi)
			v[i] = 0.999*v[i] + 0.001*float64(gi)*float64(gi)
			p[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
		}
	}
	return p
}
