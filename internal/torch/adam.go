package torch

// #include <stdlib.h>
// #include <stdint.h>
// int captiongo_adam_step(void **params, void **exp_avg, void **exp_avg_sq, int n, double lr,
//                         double beta1, double beta2, double eps, double weight_decay,
//                         int64_t step, int foreach, char **err);
// void captiongo_zero_grad(void **params, int n);
// int captiongo_lstm_greedy_step(void *embed, void *table, void **lstm_params, int n_params, int num_layers,
//                                void *lin_w, void *lin_b, void *h, void *c,
//                                const int64_t *tokens, int n, int64_t *ids_out,
//                                float *logp_out, char **err);
// int captiongo_lstm_topk_step(void *embed, void *table, void **lstm_params, int n_params, int num_layers,
//                              void *lin_w, void *lin_b, void *h, void *c,
//                              const int64_t *tokens, int n, int k, int64_t *ids_out,
//                              float *logp_out, char **err);
// void *captiongo_lstm_input_table(void *embed, void *w_ih, void *b_ih, char **err);
// int64_t captiongo_tensor_version(void *t);
// int captiongo_relu_(void *t, char **err);
// int captiongo_fold_bn(void *w, void *gamma, void *beta, void *mean, void *var, double eps,
//                       void **wf, void **bf, char **err);
import "C"

import (
	"errors"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// Handles lays the tensors' C handles (torch::Tensor*) out in a C array, for
// a C function that takes void**; the returned function frees the array.
func Handles(xs []*ts.Tensor) (unsafe.Pointer, func()) {
	p := C.malloc(C.size_t(len(xs)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	arr := unsafe.Slice((*unsafe.Pointer)(p), len(xs))
	for i, x := range xs {
		arr[i] = x.Ctensor()
	}
	return p, func() { C.free(p) }
}

// AdamImpl says how AdamStep computes torch.optim.Adam's update (helpers.cpp).
type AdamImpl int

const (
	// AdamSingle is PyTorch's single-tensor Adam, op for op (its CPU default).
	AdamSingle AdamImpl = iota
	// AdamForeach is PyTorch's multi-tensor Adam: _foreach_* ops over all
	// parameters, a few fused kernels on CUDA (its CUDA default).
	AdamForeach
)

// AdamStep applies torch.optim.Adam's update to params with their moments
// (step is the 1-based step count), in libtorch, without gradient.
func AdamStep(
	params, expAvg, expAvgSq []*ts.Tensor,
	lr, beta1, beta2, eps, weightDecay float64,
	step int,
	impl AdamImpl,
) error {
	if len(params) == 0 {
		return nil
	}
	pp, f1 := Handles(params)
	defer f1()
	mp, f2 := Handles(expAvg)
	defer f2()
	vp, f3 := Handles(expAvgSq)
	defer f3()
	var cerr *C.char
	if C.captiongo_adam_step(
		(*unsafe.Pointer)(pp),
		(*unsafe.Pointer)(mp),
		(*unsafe.Pointer)(vp),
		C.int(len(params)),
		C.double(lr),
		C.double(
			beta1,
		),
		C.double(beta2),
		C.double(eps),
		C.double(weightDecay),
		C.int64_t(step),
		C.int(impl),
		&cerr,
	) != 0 {
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
	pp, free := Handles(params)
	defer free()
	C.captiongo_zero_grad((*unsafe.Pointer)(pp), C.int(len(params)))
}

// InputTable returns E W_ih^T + b_ih (V x 4H), the first LSTM layer's input
// projection of every token (see helpers.cpp), as a new tensor.
func InputTable(embed, wIH, bIH *ts.Tensor) (*ts.Tensor, error) {
	var cerr *C.char
	p := C.captiongo_lstm_input_table(embed.Ctensor(), wIH.Ctensor(), bIH.Ctensor(), &cerr)
	if p == nil {
		defer C.free(unsafe.Pointer(cerr))
		return nil, errors.New("input table: " + C.GoString(cerr))
	}
	return ts.New(lib.Ctensor(p)), nil
}

// Version is the tensor's version counter: every in-place change (an
// optimiser step, loading weights) increments it.
func Version(t *ts.Tensor) int64 { return int64(C.captiongo_tensor_version(t.Ctensor())) }

// ReluInPlace applies ReLU to t in place (t keeps its handle).
func ReluInPlace(t *ts.Tensor) {
	var cerr *C.char
	if C.captiongo_relu_(t.Ctensor(), &cerr) != 0 {
		defer C.free(unsafe.Pointer(cerr))
		panic("relu_: " + C.GoString(cerr))
	}
}

// FoldBatchNorm returns the weight and bias of the convolution that equals a
// bias-free convolution with weight w followed by an eval-mode BatchNorm
// (gamma, beta, running mean and var, eps), computed without gradient.
func FoldBatchNorm(w, gamma, beta, mean, vari *ts.Tensor, eps float64) (wf, bf *ts.Tensor, err error) {
	var cerr *C.char
	var pw, pb unsafe.Pointer
	if C.captiongo_fold_bn(
		w.Ctensor(),
		gamma.Ctensor(),
		beta.Ctensor(),
		mean.Ctensor(),
		vari.Ctensor(),
		C.double(eps),
		&pw,
		&pb,
		&cerr,
	) != 0 {
		defer C.free(unsafe.Pointer(cerr))
		return nil, nil, errors.New("fold batch norm: " + C.GoString(cerr))
	}
	return ts.New(lib.Ctensor(pw)), ts.New(lib.Ctensor(pb)), nil
}

// GreedyStep runs one greedy step of an LSTM captioning decoder in one libtorch
// call (see helpers.cpp): h and c are updated in place; it returns the chosen
// ids and their log-probabilities. table, when not nil, is InputTable's
// projection for a one-layer LSTM, which replaces the embedding and W_ih.
func GreedyStep(
	embed, table *ts.Tensor,
	lstm []*ts.Tensor,
	numLayers int,
	linW, linB, h, c *ts.Tensor,
	tokens []int64,
) ([]int64, []float32, error) {
	return decodeStep(embed, table, lstm, numLayers, linW, linB, h, c, tokens, 0)
}

// TopKStep is GreedyStep returning each row's k best tokens (n x k, best first).
func TopKStep(
	embed, table *ts.Tensor,
	lstm []*ts.Tensor,
	numLayers int,
	linW, linB, h, c *ts.Tensor,
	tokens []int64,
	k int,
) ([]int64, []float32, error) {
	return decodeStep(embed, table, lstm, numLayers, linW, linB, h, c, tokens, k)
}

// decodeStep calls the greedy step (k = 0) or the top-k step of helpers.cpp.
func decodeStep(
	embed, table *ts.Tensor,
	lstm []*ts.Tensor,
	numLayers int,
	linW, linB, h, c *ts.Tensor,
	tokens []int64,
	k int,
) ([]int64, []float32, error) {
	n, per := len(tokens), max(k, 1)
	pp, free := Handles(lstm)
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
	var tab unsafe.Pointer
	if table != nil {
		tab = table.Ctensor()
	}
	if k == 0 {
		rc = C.captiongo_lstm_greedy_step(
			embed.Ctensor(),
			tab,
			(*unsafe.Pointer)(pp),
			C.int(len(lstm)),
			C.int(numLayers),
			linW.Ctensor(),
			linB.Ctensor(),
			h.Ctensor(),
			c.Ctensor(),
			(*C.int64_t)(tk),
			C.int(n),
			(*C.int64_t)(idsC),
			(*C.float)(lpC),
			&cerr,
		)
	} else {
		rc = C.captiongo_lstm_topk_step(embed.Ctensor(), tab, (*unsafe.Pointer)(pp), C.int(len(lstm)), C.int(numLayers),
			linW.Ctensor(), linB.Ctensor(),
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
