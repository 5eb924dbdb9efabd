//go:build c10d

package dist

// #cgo CXXFLAGS: -std=c++17 -DUSE_C10D_GLOO
// #cgo LDFLAGS: -lstdc++
// #include <stdlib.h>
// #include <stdint.h>
// void *captiongo_dist_new(const char *addr, int port, int rank, int world, int64_t timeout_ms, int cuda_device,
//                          char **err);
// int captiongo_dist_allreduce(void *g, void **ts, int n, int mean, char **err);
// int captiongo_dist_broadcast(void *g, void **ts, int n, int root, char **err);
// int captiongo_dist_barrier(void *g, char **err);
// void captiongo_dist_free(void *g);
// void *captiongo_dist_reducer_new(void *g, void **ps, int n, int64_t bucket_bytes, int64_t first_bytes, char **err);
// int captiongo_dist_reducer_prepare(void *r, char **err);
// void captiongo_dist_reducer_free(void *r);
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// Built reports whether collectives are built in (the c10d tag).
const Built = true

// Group is this process's membership of the run's process group.
type Group struct {
	Env
	Backends string // which backend runs whose collectives, e.g. "Gloo" or "Gloo (CPU), NCCL (CUDA)"
	g        unsafe.Pointer
}

// Join rendezvouses with the other ranks at e.Addr:e.Port (rank 0 serves
// the store) and opens the process group: Gloo for CPU tensors and, when
// libtorch has this rank's GPU (cuda:LOCAL_RANK), NCCL for CUDA tensors in a
// build with the nccl tag (Gloo through the host without it). timeout bounds
// the rendezvous and every collective: a rank that dies or hangs makes the
// others' next collective fail within it.
func Join(e Env, timeout time.Duration) (*Group, error) {
	addr := C.CString(e.Addr)
	defer C.free(unsafe.Pointer(addr))
	dev, backends := -1, "Gloo"
	if gotch.CUDA.IsAvailable() && e.LocalRank < int(gotch.CUDA.DeviceCount()) {
		dev, backends = e.LocalRank, "Gloo (CPU), Gloo through the host (CUDA)"
		if NCCL {
			backends = "Gloo (CPU), NCCL (CUDA)"
		}
	}
	var cerr *C.char
	g := C.captiongo_dist_new(addr, C.int(e.Port), C.int(e.Rank), C.int(e.World), C.int64_t(timeout.Milliseconds()),
		C.int(dev), &cerr)
	if g == nil {
		return nil, fmt.Errorf("rank %d of %d: rendezvous at %s:%d (MASTER_ADDR, MASTER_PORT): %w", e.Rank, e.World,
			e.Addr, e.Port, cErr(cerr))
	}
	return &Group{Env: e, Backends: backends, g: g}, nil
}

func cErr(p *C.char) error {
	if p == nil {
		return errors.New("unknown error")
	}
	defer C.free(unsafe.Pointer(p))
	return errors.New(firstLine(C.GoString(p)))
}

// AllReduce sums the tensors in place over the ranks (mean: divided by the
// world size), through one flat buffer.
func (g *Group) AllReduce(xs []*ts.Tensor, mean bool) error {
	if len(xs) == 0 {
		return nil
	}
	p, free := torch.Handles(xs)
	defer free()
	m := 0
	if mean {
		m = 1
	}
	var cerr *C.char
	if C.captiongo_dist_allreduce(g.g, (*unsafe.Pointer)(p), C.int(len(xs)), C.int(m), &cerr) != 0 {
		return g.fail("allreduce", cErr(cerr))
	}
	return nil
}

// Broadcast copies root's tensors into every rank's, in place.
func (g *Group) Broadcast(xs []*ts.Tensor, root int) error {
	if len(xs) == 0 {
		return nil
	}
	p, free := torch.Handles(xs)
	defer free()
	var cerr *C.char
	if C.captiongo_dist_broadcast(g.g, (*unsafe.Pointer)(p), C.int(len(xs)), C.int(root), &cerr) != 0 {
		return g.fail("broadcast", cErr(cerr))
	}
	return nil
}

// Barrier waits for every rank.
func (g *Group) Barrier() error {
	var cerr *C.char
	if C.captiongo_dist_barrier(g.g, &cerr) != 0 {
		return g.fail("barrier", cErr(cerr))
	}
	return nil
}

// Close leaves the group.
func (g *Group) Close() {
	if g != nil && g.g != nil {
		C.captiongo_dist_free(g.g)
		g.g = nil
	}
}

// Reducer is PyTorch DistributedDataParallel's gradient reducer (c10d's
// Reducer) over a fixed list of parameters: during Backward each bucket of
// gradients is summed over the ranks as soon as backward has produced it,
// overlapping communication with the rest of backward, and when Backward
// returns every parameter's gradient is its sum over the ranks. Every
// parameter must receive a gradient in every Backward, on every rank.
type Reducer struct {
	g *Group
	r unsafe.Pointer
}

// NewReducer makes a Reducer over params with DDP's bucket sizes: the first
// bucket firstBytes, the others bucketBytes (DDP's: DDPFirstBucketBytes, DDPBucketBytes).
func (g *Group) NewReducer(params []*ts.Tensor, bucketBytes, firstBytes int64) (*Reducer, error) {
	if len(params) == 0 {
		return nil, fmt.Errorf("rank %d of %d: a gradient reducer needs parameters", g.Rank, g.World)
	}
	p, free := torch.Handles(params)
	defer free()
	var cerr *C.char
	r := C.captiongo_dist_reducer_new(g.g, (*unsafe.Pointer)(p), C.int(len(params)), C.int64_t(bucketBytes),
		C.int64_t(firstBytes), &cerr)
	if r == nil {
		return nil, fmt.Errorf("rank %d of %d: gradient reducer: %w", g.Rank, g.World, cErr(cerr))
	}
	return &Reducer{g: g, r: r}, nil
}

// Backward runs loss's backward pass with the gradients summed over the
// ranks as they are produced.
func (r *Reducer) Backward(loss *ts.Tensor) error {
	var cerr *C.char
	if C.captiongo_dist_reducer_prepare(r.r, &cerr) != 0 {
		return r.g.fail("allreduce (bucket order)", cErr(cerr))
	}
	if err := loss.Backward(); err != nil {
		return r.g.fail("allreduce", errors.New(firstLine(err.Error())))
	}
	return nil
}

// Close frees the reducer (its hooks stay on the parameters' gradient
// accumulators, doing nothing).
func (r *Reducer) Close() {
	if r != nil && r.r != nil {
		C.captiongo_dist_reducer_free(r.r)
		r.r = nil
	}
}
