package torch

// #include <stdlib.h>
// #include <stdint.h>
// int captiongo_adam_step(void **params, void **exp_avg, void **exp_avg_sq, int n, double lr,
//                         double beta1, double beta2, double eps, double weight_decay,
//                         int64_t step, char **err);
// void captiongo_zero_grad(void **params, int n);
import "C"

import (
	"errors"
	"unsafe"

	"github.com/sugarme/gotch/ts"
)

func handles(xs []*ts.Tensor) (unsafe.Pointer, func()) {
	p := C.malloc(C.size_t(len(xs)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	arr := unsafe.Slice((*unsafe.Pointer)(p), len(xs))
	for i, x := range xs {
		arr[i] = x.Ctensor()
	}
	return p, func() { C.free(p) }
}

// AdamStep applies torch.optim.Adam's update to params with their moments
// (step is the 1-based step count), in libtorch, without gradient.
func AdamStep(params, expAvg, expAvgSq []*ts.Tensor, lr, beta1, beta2, eps, weightDecay float64, step int) error {
	if len(params) == 0 {
		return nil
	}
	pp, f1 := handles(params)
	defer f1()
	mp, f2 := handles(expAvg)
	defer f2()
	vp, f3 := handles(expAvgSq)
	defer f3()
	var cerr *C.char
	if C.captiongo_adam_step((*unsafe.Pointer)(pp), (*unsafe.Pointer)(mp), (*unsafe.Pointer)(vp), C.int(len(params)), C.double(lr),
		C.double(beta1), C.double(beta2), C.double(eps), C.double(weightDecay), C.int64_t(step), &cerr) != 0 {
		defer C.free(unsafe.Pointer(cerr))
		return errors.New("adam step: " + C.GoString(cerr))
	}
	return nil
}

// ZeroGrads sets the parameters' gradients to None (PyTorch 2's default).
func ZeroGrads(params []*ts.Tensor) {
	if len(params) == 0 {
		return
	}
	pp, free := handles(params)
	defer free()
	C.captiongo_zero_grad((*unsafe.Pointer)(pp), C.int(len(params)))
}
