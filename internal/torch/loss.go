package torch

// #include <stdlib.h>
// #include <stdint.h>
// void *captiongo_cross_entropy(void *logits, void *target, int64_t ignore_index, char **err);
import "C"

import (
	"errors"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// CrossEntropy is PyTorch's cross_entropy(logits, target, ignore_index,
// reduction="mean") for logits N x V and int64 targets N, computed on the CPU
// as one autograd node that forms the gradient in the forward pass (see
// loss.cpp); on other devices it is PyTorch's own op.
func CrossEntropy(logits, target *ts.Tensor, ignoreIndex int64) (*ts.Tensor, error) {
	var cerr *C.char
	p := C.captiongo_cross_entropy(logits.Ctensor(), target.Ctensor(), C.int64_t(ignoreIndex), &cerr)
	if p == nil {
		defer C.free(unsafe.Pointer(cerr))
		return nil, errors.New(C.GoString(cerr))
	}
	return ts.New(lib.Ctensor(p)), nil
}
