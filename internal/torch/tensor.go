package torch

import (
	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// Float32s copies a tensor's values (any device, dtype or layout) into a Go slice.
func Float32s(x *ts.Tensor) []float32 {
	c := x.MustTo(gotch.CPU, false).MustTotype(gotch.Float, true).MustContiguous(true)
	defer c.MustDrop()
	out := make([]float32, c.Numel())
	c.MustCopyData(out, c.Numel())
	return out
}

// Float64s copies a tensor's values into a Go slice of float64.
func Float64s(x *ts.Tensor) []float64 {
	c := x.MustTo(gotch.CPU, false).MustTotype(gotch.Double, true).MustContiguous(true)
	defer c.MustDrop()
	out := make([]float64, c.Numel())
	c.MustCopyData(out, c.Numel())
	return out
}

// Int64s copies an integer tensor's values into a Go slice.
func Int64s(x *ts.Tensor) []int64 {
	c := x.MustTo(gotch.CPU, false).MustTotype(gotch.Int64, true).MustContiguous(true)
	defer c.MustDrop()
	out := make([]int64, c.Numel())
	c.MustCopyData(out, c.Numel())
	return out
}

// FromFloat32s makes a float32 tensor of the given shape on a device.
func FromFloat32s(data []float32, shape []int64, device gotch.Device) *ts.Tensor {
	x := ts.MustOfSlice(data).MustView(shape, true)
	if device == gotch.CPU {
		return x
	}
	return x.MustTo(device, true)
}

// FromInt64s makes an int64 tensor of the given shape on a device.
func FromInt64s(data []int64, shape []int64, device gotch.Device) *ts.Tensor {
	x := ts.MustOfSlice(data).MustView(shape, true)
	if device == gotch.CPU {
		return x
	}
	return x.MustTo(device, true)
}

// LiveTensors is the number of gotch tensors created and not yet dropped
// (freed by MustDrop or by a finalizer). Tests compare it around a piece of
// work with the garbage collector off, so that a tensor that is not dropped
// explicitly shows up.
func LiveTensors() int { return len(ts.ExistingTensors) }

// Item returns the value of a one-element tensor (like PyTorch's .item()).
// gotch's Float64Values leaks the float64 copy it makes; this does not.
func Item(x *ts.Tensor) float64 { return float64(Float32s(x)[0]) }

// InPlace runs one of gotch's in-place ops (MustMulScalar_, MustAddScalar_,
// ...) on t and frees the tensor handle the op replaced. gotch's generated
// in-place ops store the handle libtorch returns in t and drop the old one on
// the floor; that handle still holds a reference to the tensor, so its memory
// is never freed once t moves on (a gradient, for example).
func InPlace(t *ts.Tensor, op func()) {
	old := t.Ctensor()
	op()
	if cur := t.Ctensor(); cur != old {
		lib.AtFree(lib.Ctensor(old))
	}
}
