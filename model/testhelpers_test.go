package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch/ts"

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
		t.Fatalf("%s: got %d values (shape %v), reference has %d (shape %v)", filepath.Base(refPath), len(g), got.MustSize(), len(want), shape)
	}
	m := 0.0
	for i := range g {
		m = math.Max(m, math.Abs(float64(g[i]-want[i])))
	}
	return m
}
