package model

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// The tests in this file need a CUDA device. CI's machines have none, so there
// they skip and say so; scripts/device_bench.sh runs them on the GPU machine
// (a test binary built by scripts/device_pack.sh).

func needCUDA(t *testing.T) {
	t.Helper()
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device here: this test runs on a GPU machine (scripts/device_bench.sh)")
	}
}

// stderrOf runs fn with file descriptor 2 sent to a file and returns what was
// written there: libtorch's C++ warnings go straight to it.
func stderrOf(t *testing.T, fn func()) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	fn()
	syscall.Dup3(saved, 2, 0)
	syscall.Close(saved)
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cudaTwin builds the same captioner on the CPU and on CUDA (the CPU one's
// weights copied over).
func cudaTwin(t *testing.T, cfg Config) (cpu, gpu *Captioner) {
	t.Helper()
	torch.ManualSeed(11)
	cpu, err := NewCaptioner(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	gpu, err = NewCaptioner(cfg, gotch.CudaIfAvailable())
	if err != nil {
		t.Fatal(err)
	}
	src := cpu.VS.Variables()
	torch.NoGrad(func() {
		for name, dst := range gpu.VS.Variables() {
			s := src[name]
			dst.Copy_(&s)
		}
	})
	// Variables() gives struct copies, which do not keep the tensors alive.
	runtime.KeepAlive(cpu.VS)
	runtime.KeepAlive(gpu.VS)
	return cpu, gpu
}

const cudaRNNWarning = "not part of single contiguous chunk"

// TestLSTMOnCUDA: on CUDA the LSTM's weights are one cuDNN buffer (no
// per-call compaction, which cuDNN announces with a warning); for three steps
// the teacher-forced loss and every gradient agree with the CPU's, and Adam's
// update (foreach on CUDA, the single-tensor loop on the CPU) agrees given the
// same gradients. After each step the CUDA model takes the CPU's parameters
// and gradients, so that differences do not pile up.
//
// The gradients' tolerance is 2e-3 of each tensor's largest gradient: on an
// H200 (libtorch 2.11, cuDNN) they differ from the CPU's by up to 5.5e-4 of it
// from the second step on (about TF32's rounding; the first step agrees to
// 1e-4), far below what a wrong gradient gives.
func TestLSTMOnCUDA(t *testing.T) {
	needCUDA(t)
	run(t, func() {
		cfg := Config{VocabSize: 40, EmbedSize: 8, HiddenSize: 16, NumLayers: 2}
		cpu, gpu := cudaTwin(t, cfg)
		dev := gpu.Device()
		pooled := ts.MustRandn([]int64{4, 2048}, gotch.Float, gotch.CPU)
		defer pooled.MustDrop()
		tok := torch.FromInt64s([]int64{1, 5, 9, 2, 1, 7, 3, 2, 1, 11, 4, 2, 1, 6, 8, 2}, []int64{4, 4}, gotch.CPU)
		defer tok.MustDrop()
		pooledG, tokG := pooled.MustTo(dev, false), tok.MustTo(dev, false)
		defer pooledG.MustDrop()
		defer tokG.MustDrop()
		const lr = 0.01
		adamC, adamG := NewAdam(cpu.VS, 0.01), NewAdam(gpu.VS, 0.01)
		if adamG.Impl != torch.AdamForeach {
			t.Errorf("Adam on CUDA uses %v, want the foreach form", adamG.Impl)
		}
		lossOf := func(m *Captioner, a *Adam, p, tk *ts.Tensor) float64 {
			a.ZeroGrad()
			feat := m.Head(p, true)
			logits := m.DecodeTeacher(feat, tk, true)
			loss := Loss(logits, tk)
			loss.MustBackward()
			v := torch.Item(loss)
			loss.MustDrop()
			logits.MustDrop()
			feat.MustDrop()
			return v
		}
		// each calls fn for every trainable variable of the two models.
		each := func(fn func(name string, c, g *ts.Tensor)) {
			src := cpu.VS.Variables()
			for name, g := range gpu.VS.Variables() {
				sc := src[name]
				if sc.MustRequiresGrad() { // not the frozen backbone
					fn(name, &sc, &g)
				}
			}
			runtime.KeepAlive(cpu.VS)
			runtime.KeepAlive(gpu.VS)
		}
		// compare: at most tol times the CPU tensor's largest magnitude apart, plus abs.
		compare := func(what string, tol, abs float64, get func(*ts.Tensor) *ts.Tensor) {
			each(func(name string, c, g *ts.Tensor) {
				gc := get(g).MustTo(gotch.CPU, false)
				cv, gv := floats(get(c)), floats(gc)
				gc.MustDrop()
				scale, worst, at := 0.0, 0.0, 0
				for i := range cv {
					scale = math.Max(scale, math.Abs(float64(cv[i])))
					if d := math.Abs(float64(cv[i] - gv[i])); d > worst {
						worst, at = d, i
					}
				}
				if worst > tol*scale+abs {
					t.Errorf("%s of %s: [%d] CPU %g, CUDA %g (largest |CPU| %g)", what, name, at, cv[at], gv[at], scale)
				}
			})
		}
		same := func(x *ts.Tensor) *ts.Tensor { return x }
		grad := func(x *ts.Tensor) *ts.Tensor { return x.MustGrad(false) }
		for i := 0; i < 3; i++ {
			lc := lossOf(cpu, adamC, pooled, tok)
			var lg float64
			if w := stderrOf(t, func() { lg = lossOf(gpu, adamG, pooledG, tokG) }); strings.Contains(
				w,
				cudaRNNWarning,
			) {
				t.Fatalf("step %d: cuDNN compacted the LSTM's weights: %s", i, w)
			}
			if math.Abs(lc-lg) > 1e-5*math.Max(1, math.Abs(lc)) {
				t.Errorf("step %d: loss on the CPU %.7f, on CUDA %.7f", i, lc, lg)
			}
			compare(fmt.Sprintf("step %d: gradient", i), 2e-3, 1e-7, grad)
			// Adam from the same gradients: a wrong update (a moment, the bias
			// correction, the decay) is off by a good part of lr; rounding
			// differences stay near 1e-8.
			torch.NoGrad(func() {
				each(func(_ string, c, g *ts.Tensor) { g.MustGrad(false).Copy_(c.MustGrad(false)) })
			})
			adamC.Step(lr)
			adamG.Step(lr)
			compare(fmt.Sprintf("step %d: parameter after Adam", i), 0, 1e-4*lr, same)
			torch.NoGrad(func() { each(func(_ string, c, g *ts.Tensor) { g.Copy_(c) }) })
		}
	})
}

// TestLSTMWarningIsSeen shows that TestLSTMOnCUDA's check can fail: without
// flattening, cuDNN's warning does reach stderrOf.
func TestLSTMWarningIsSeen(t *testing.T) {
	needCUDA(t)
	flattenOnCUDA = false
	defer func() { flattenOnCUDA = true }()
	run(t, func() {
		torch.ManualSeed(11)
		m, err := NewCaptioner(
			Config{VocabSize: 40, EmbedSize: 8, HiddenSize: 16, NumLayers: 1},
			gotch.CudaIfAvailable(),
		)
		if err != nil {
			t.Fatal(err)
		}
		x := ts.MustRandn([]int64{3, 2, 8}, gotch.Float, m.Device())
		defer x.MustDrop()
		w := stderrOf(t, func() { torch.NoGrad(func() { m.baseline().lstmRun(x, nil, false).MustDrop() }) })
		if !strings.Contains(w, cudaRNNWarning) {
			t.Errorf("unflattened weights on CUDA, but no cuDNN warning captured (got %q)", w)
		}
	})
}

// TestDecodingOnCUDA: greedy and beam search on CUDA (one layer: the input
// table and ATen's fused LSTM cell; two layers: the LSTM op) give the CPU's
// tokens and log-probabilities.
func TestDecodingOnCUDA(t *testing.T) {
	needCUDA(t)
	for _, layers := range []int{1, 2} {
		run(t, func() {
			cpu, gpu := cudaTwin(t, Config{VocabSize: 40, EmbedSize: 8, HiddenSize: 16, NumLayers: layers})
			pooled := ts.MustRandn([]int64{5, 2048}, gotch.Float, gotch.CPU)
			defer pooled.MustDrop()
			pooledG := pooled.MustTo(gpu.Device(), false)
			defer pooledG.MustDrop()
			gc, bc := greedyAndBeam(cpu, pooled, 5, 12)
			gg, bg := greedyAndBeam(gpu, pooledG, 5, 12)
			if layers == 1 && gpu.baseline().inTable.out == nil {
				t.Error("one layer on CUDA: no input table was built")
			}
			for _, c := range []struct {
				name     string
				cpu, gpu []Hypothesis
			}{{"greedy", gc, gg}, {"beam 3", bc, bg}} {
				for i := range c.cpu {
					// Twelve steps of log-probabilities around -3.4 each: float
					// differences of the two devices' kernels stay near 1e-6 relative.
					if !reflect.DeepEqual(c.cpu[i].Tokens, c.gpu[i].Tokens) ||
						math.Abs(c.cpu[i].LogProb-c.gpu[i].LogProb) > 1e-5*math.Abs(c.cpu[i].LogProb) {
						t.Errorf("%d layers, %s, image %d: CPU %v (%.6f), CUDA %v (%.6f)", layers, c.name, i,
							c.cpu[i].Tokens, c.cpu[i].LogProb, c.gpu[i].Tokens, c.gpu[i].LogProb)
					}
				}
			}
		})
	}
}
