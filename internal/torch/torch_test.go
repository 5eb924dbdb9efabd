package torch

import (
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func tensor(t *testing.T, vals []float32, shape ...int64) *ts.Tensor {
	t.Helper()
	x := ts.MustOfSlice(vals).MustView(shape, true)
	return x
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6 }

// TestMatmulBackward runs real libtorch ops through gotch: y = sum(x @ w) has
// dy/dx = 1 @ w^T (every row of the gradient is the row sums of w) and
// dy/dw = x^T @ 1 (every column is the column sums of x).
func TestMatmulBackward(t *testing.T) {
	err := Run(func() error {
		x := tensor(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3).MustSetRequiresGrad(true, true)
		w := tensor(t, []float32{1, -1, 2, 0.5, 3, -2}, 3, 2).MustSetRequiresGrad(true, true)
		y := x.MustMatmul(w, false)
		if got, want := y.Float64Values(), []float64{1*1 + 2*2 + 3*3, -1 + 2*0.5 - 2*3, 4 + 5*2 + 6*3, -4 +
			5*0.5 - 6*2}; !equal(
			got,
			want,
		) {
			t.Errorf("x@w = %v, want %v", got, want)
		}
		s := y.MustSum(gotch.Float, true)
		s.MustBackward()
		gx := x.MustGrad(false).Float64Values()
		wantGx := []float64{0, 2.5, 1, 0, 2.5, 1} // row sums of w: 0, 2.5, 1
		if !equal(gx, wantGx) {
			t.Errorf("dy/dx = %v, want %v", gx, wantGx)
		}
		gw := w.MustGrad(false).Float64Values()
		wantGw := []float64{5, 5, 7, 7, 9, 9} // column sums of x: 5, 7, 9
		if !equal(gw, wantGw) {
			t.Errorf("dy/dw = %v, want %v", gw, wantGw)
		}
		s.MustDrop()
		x.MustDrop()
		w.MustDrop()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !near(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestNoGradThenTrainStep is the thread-slip check: a NoGrad block (evaluation)
// followed by a training step must still record gradients. Many goroutines that
// yield and allocate between the two would catch an unlocked goroutine moving to
// a thread whose grad mode was left off.
func TestNoGradThenTrainStep(t *testing.T) {
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- Run(func() error {
				w := tensor(t, []float32{0.5, -1.5}, 2).MustSetRequiresGrad(true, true)
				defer w.MustDrop()
				for r := 0; r < rounds; r++ {
					NoGrad(func() {
						e := w.MustMul(w, false)
						if e.MustRequiresGrad() {
							t.Errorf("round %d: a tensor made inside NoGrad requires grad", r)
						}
						e.MustDrop()
					})
					runtime.Gosched()
					_ = make([]byte, 1<<16) // let the scheduler and GC run between the two
					if !GradEnabled() {
						t.Errorf("round %d: grad mode is off after NoGrad", r)
						return nil
					}
					loss := w.MustMul(w, false).MustSum(gotch.Float, true)
					if !loss.MustRequiresGrad() {
						t.Errorf("round %d: training loss does not require grad (thread slip?)", r)
						return nil
					}
					loss.MustBackward()
					g := w.MustGrad(false)
					gv := g.Float64Values()
					if !near(gv[0], 1) || !near(gv[1], -3) { // d(sum w^2)/dw = 2w
						t.Errorf("round %d: grad %v, want [1 -3]", r, gv)
					}
					g.MustDrop()
					w.ZeroGrad()
					loss.MustDrop()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestNoGradRestoresOnPanic(t *testing.T) {
	err := Run(func() error {
		func() {
			defer func() { _ = recover() }()
			NoGrad(func() { panic("boom") })
		}()
		if !GradEnabled() {
			t.Error("grad mode stayed off after a panic inside NoGrad")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunReturnsPanicAsError(t *testing.T) {
	err := Run(func() error { panic("bad shape") })
	if err == nil || err.Error() != "panic: bad shape" {
		t.Fatalf("Run(panic) = %v, want error \"panic: bad shape\"", err)
	}
}

func TestInspect(t *testing.T) {
	var in Info
	if err := Run(func() error { in = Inspect(); return nil }); err != nil {
		t.Fatal(err)
	}
	// make exports the version setup found; a bare `go test` means the 2.1.0 default.
	want := os.Getenv("CAPTIONGO_LIBTORCH_VERSION")
	if want == "" {
		want = GotchVersion
	}
	if in.CompiledVersion != want {
		t.Errorf("compiled against libtorch %q, want %s (what make setup found)", in.CompiledVersion, want)
	}
	if in.LibtorchDir == "" {
		t.Fatalf("libtorch_cpu.so is not mapped into the test process: %v", in.Libraries)
	}
	if in.LoadedVersion != "" && in.LoadedVersion != in.CompiledVersion {
		t.Errorf(
			"loaded libtorch %s from %s, compiled against %s",
			in.LoadedVersion,
			in.LibtorchDir,
			in.CompiledVersion,
		)
	}
	if in.LibraryABI != in.CompiledABI {
		t.Errorf("ABI mismatch: compiled with %s, libc10 is %s", ABIName(in.CompiledABI), ABIName(in.LibraryABI))
	}
	if !in.CUDAAvailable && in.CUDAWhyNot == "" {
		t.Error("CUDA unavailable but no reason given")
	}
	if in.Threads < 1 {
		t.Errorf("Threads() = %d", in.Threads)
	}
}

func TestDevice(t *testing.T) {
	if err := Run(func() error {
		d, err := Device("cpu")
		if err != nil || d != gotch.CPU {
			t.Errorf("Device(cpu) = %v, %v", d, err)
		}
		if _, err := Device("tpu"); err == nil {
			t.Error("Device(tpu) gave no error")
		}
		if !gotch.CUDA.IsAvailable() {
			if _, err := Device("cuda"); err == nil {
				t.Error("Device(cuda) without a GPU gave no error")
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func rssMB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n / 1024
		}
	}
	return 0
}

// TestInPlaceFreesReplacedHandle: 60 tensors of 8 MB, each changed in place
// and dropped. Through InPlace their memory comes back; a bare gotch in-place
// op would keep every one alive (480 MB).
func TestInPlaceFreesReplacedHandle(t *testing.T) {
	err := Run(func() error {
		x := ts.MustOnes([]int64{4}, gotch.Float, gotch.CPU)
		InPlace(x, func() { x.MustMulScalar_(ts.FloatScalar(3)) })
		if v := Float32s(x); v[0] != 3 || v[3] != 3 {
			t.Errorf("after InPlace: %v, want 3s", v)
		}
		x.MustDrop()
		before := rssMB()
		for i := 0; i < 60; i++ {
			y := ts.MustOnes([]int64{2 << 20}, gotch.Float, gotch.CPU)
			InPlace(y, func() { y.MustMulScalar_(ts.FloatScalar(2)) })
			y.MustDrop()
		}
		if grew := rssMB() - before; grew > 100 {
			t.Errorf("resident memory grew by %d MB over 60 dropped 8 MB tensors", grew)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGotchTensorsAreSmall: the build uses the gotch copy make setup patches
// (scripts/patch_gotch.sh), whose tensor handles carry no 100 KB Go block.
func TestGotchTensorsAreSmall(t *testing.T) {
	var b float64
	if err := Run(func() error { b = GoBytesPerTensor(); return nil }); err != nil {
		t.Fatal(err)
	}
	if b >= PatchedGotchMaxBytes {
		t.Fatalf(
			"gotch allocates %.0f bytes of Go heap per tensor handle: built against the stock module, not make setup's "+
				"patched copy",
			b,
		)
	}
	t.Logf("%.0f bytes of Go heap per tensor handle", b)
}
