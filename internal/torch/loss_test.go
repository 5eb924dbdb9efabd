package torch

import (
	"math"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestCrossEntropyMatchesPyTorch compares CrossEntropy (the one-node loss of
// loss.cpp) with libtorch's own cross_entropy, the op PyTorch's
// F.cross_entropy runs, on the same logits: the loss and the gradient it
// sends back, with ignored rows, a probability too small for a float softmax,
// an incoming gradient other than 1, no grad, and every row ignored.
func TestCrossEntropyMatchesPyTorch(t *testing.T) {
	err := Run(func() error {
		ManualSeed(7)
		const N, V = 57, 31
		cases := []struct {
			name   string
			scale  float64 // logits ~ N(0, scale^2)
			ignore int64
			drop   float64 // share of rows whose target is ignore
			gradIn float64 // the loss is multiplied by this before backward
			tiny   bool    // row 3's target gets probability ~1e-90
		}{
			{"plain", 3, 0, 0.2, 1, false},
			{"scaled loss", 3, 0, 0.2, 2.5, false},
			{"ignore -100", 2, -100, 0.3, 1, false},
			{"underflowing probability", 3, 0, 0.1, 1, true},
			{"no row ignored", 1, 0, 0, 1, false},
		}
		for _, c := range cases {
			x0 := ts.MustRandn([]int64{N, V}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(c.scale), true)
			tg := ts.MustRandintLow(1, V, []int64{N}, gotch.Int64, gotch.CPU)
			drop := ts.MustRand([]int64{N}, gotch.Float, gotch.CPU).MustLt(ts.FloatScalar(c.drop), true)
			tg = tg.MustMaskedFill(drop, ts.IntScalar(c.ignore), true)
			if c.tiny {
				row := x0.MustSelect(0, 3, false)
				InPlace(row, func() { row.MustFill_(ts.FloatScalar(0)) })
				tgt := tg.MustSelect(0, 3, false)
				InPlace(tgt, func() { tgt.MustFill_(ts.IntScalar(5)) })
				cell := row.MustSelect(0, 5, false)
				InPlace(cell, func() { cell.MustFill_(ts.FloatScalar(-200)) })
				cell.MustDrop()
				row.MustDrop()
				tgt.MustDrop()
			}
			drop.MustDrop()
			run := func(fused bool) (loss float64, grad []float64) {
				x := x0.MustDetach(false).MustSetRequiresGrad(true, true)
				var l *ts.Tensor
				if fused {
					var err error
					if l, err = CrossEntropy(x, tg, c.ignore); err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
				} else {
					none := ts.NewTensor()
					l = x.MustCrossEntropyLoss(tg, none, 1, c.ignore, 0, false)
					none.MustDrop()
				}
				loss = Item(l)
				s := l.MustMulScalar(ts.FloatScalar(c.gradIn), true)
				s.MustBackward()
				g := x.MustGrad(false)
				grad = g.Float64Values()
				g.MustDrop()
				s.MustDrop()
				x.MustDrop()
				return loss, grad
			}
			lf, gf := run(true)
			lp, gp := run(false)
			if math.IsNaN(lf) || math.Abs(lf-lp) > 1e-6*math.Max(1, math.Abs(lp)) {
				t.Errorf("%s: loss %.9g, PyTorch's %.9g", c.name, lf, lp)
			}
			if c.tiny && lp < 2 {
				t.Errorf("%s: the underflowing row is not in the loss (%.4g)", c.name, lp)
			}
			worst := 0.0
			for i := range gf {
				worst = math.Max(worst, math.Abs(gf[i]-gp[i]))
			}
			if worst > 1e-7 {
				t.Errorf("%s: gradient differs from PyTorch's by up to %.3g", c.name, worst)
			}
			// Without grad (evaluation): the same loss.
			NoGrad(func() {
				l, err := CrossEntropy(x0, tg, c.ignore)
				if err != nil {
					t.Fatalf("%s, no grad: %v", c.name, err)
				}
				if v := Item(l); math.Abs(v-lp) > 1e-6*math.Max(1, math.Abs(lp)) {
					t.Errorf("%s, no grad: loss %.9g, PyTorch's %.9g", c.name, v, lp)
				}
				l.MustDrop()
			})
			x0.MustDrop()
			tg.MustDrop()
		}
		// Every row ignored: NaN, as PyTorch gives (0 / 0).
		x := ts.MustRandn([]int64{4, V}, gotch.Float, gotch.CPU)
		tg := ts.MustZeros([]int64{4}, gotch.Int64, gotch.CPU)
		l, err := CrossEntropy(x, tg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if v := Item(l); !math.IsNaN(v) {
			t.Errorf("every row ignored: loss %v, want NaN", v)
		}
		l.MustDrop()
		// Shapes that do not match are an error, not a crash.
		bad := ts.MustZeros([]int64{5}, gotch.Int64, gotch.CPU)
		if _, err := CrossEntropy(x, bad, 0); err == nil {
			t.Error("4 x V logits with 5 targets: no error")
		}
		bad.MustDrop()
		x.MustDrop()
		tg.MustDrop()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
