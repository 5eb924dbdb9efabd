package torch

// #include <stdlib.h>
// #include <stdint.h>
// int captiongo_adam_step(void **params, void **exp_avg, void **exp_avg_sq, int n, double lr,
//                         double beta1, double beta2, double eps, double weight_decay,
//                         int64_t step, char **err);
// void captiongo_zero_grad(void **params, int n);
// int captiongo_lstm_greedy_step(void *embed, void **lstm_params, int n_params, int num_layers,
//                                void *lin_w, void *lin_b, void *h, void *c,
//                                const int64_t *tokens, int n, int64_t *ids_out,
//                                float *logp_out, char **err);
// int captiongo_lstm_topk_step(void *embed, void **lstm_params, int n_params, int num_layers,
//                              void *lin_w, void *lin_b, void *h, void *c,
//                              const int64_t *tokens, int n, int k, int64_t *ids_out,
//                              float *logp_out, char **err);
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

// GreedyStep runs one greedy step of an LSTM captioning decoder in one libtorch
// call (see helpers.cpp): h and c are updated in place; it returns the chosen
// ids and their log-probabilities.
func GreedyStep(embed *ts.Tensor, lstm []*ts.Tensor, numLayers int, linW, linB, h, c *ts.Tensor, tokens []int64) ([]int64, []float32, error) {
	return decodeStep(embed, lstm, numLayers, linW, linB, h, c, tokens, 0)
}

// TopKStep is GreedyStep returning each row's k best tokens (n x k, best first).
func TopKStep(embed *ts.Tensor, lstm []*ts.Tensor, numLayers int, linW, linB, h, c *ts.Tensor, tokens []int64, k int) ([]int64, []float32, error) {
	return decodeStep(embed, lstm, numLayers, linW, linB, h, c, tokens, k)
}

// decodeStep calls the greedy step (k = 0) or the top-k step of helpers.cpp.
func decodeStep(embed *ts.Tensor, lstm []*ts.Tensor, numLayers int, linW, linB, h, c *ts.Tensor, tokens []int64, k int) ([]int64, []float32, error) {
	n, per := len(tokens), max(k, 1)
	pp, free := handles(lstm)
	defer free()
	tk := C.malloc(C.size_t(8 * n))
	defer C.free(tk)
	copy(unsafe.Slice((*int64)(tk), n), tokens)
	idsC := C.malloc(C.size_t(8 * n * per))
	defer C.free(idsC)
	lpC := C.malloc(C.size_t(4 * n * per))
	defer C.free(lpC)
	var cerr *C.char
	var rc C.int
	if k == 0 {
		rc = C.captiongo_lstm_greedy_step(embed.Ctensor(), (*unsafe.Pointer)(pp), C.int(len(lstm)), C.int(numLayers), linW.Ctensor(), linB.Ctensor(),
			h.Ctensor(), c.Ctensor(), (*C.int64_t)(tk), C.int(n), (*C.int64_t)(idsC), (*C.float)(lpC), &cerr)
	} else {
		rc = C.captiongo_lstm_topk_step(embed.Ctensor(), (*unsafe.Pointer)(pp), C.int(len(lstm)), C.int(numLayers), linW.Ctensor(), linB.Ctensor(),
			h.Ctensor(), c.Ctensor(), (*C.int64_t)(tk), C.int(n), C.int(k), (*C.int64_t)(idsC), (*C.float)(lpC), &cerr)
	}
	if rc != 0 {
		defer C.free(unsafe.Pointer(cerr))
		return nil, nil, errors.New("decoding step: " + C.GoString(cerr))
	}
	ids := append([]int64(nil), unsafe.Slice((*int64)(idsC), n*per)...)
	lp := append([]float32(nil), unsafe.Slice((*float32)(lpC), n*per)...)
	return ids, lp, nil
}
