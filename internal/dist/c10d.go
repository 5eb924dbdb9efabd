//go:build c10d

package dist

// #cgo CXXFLAGS: -std=c++17 -DUSE_C10D_GLOO
// #cgo LDFLAGS: -lstdc++
// #include <stdlib.h>
// #include <stdint.h>
// void *captiongo_dist_new(const char *addr, int port, int rank, int world, int64_t timeout_ms, char **err);
// int captiongo_dist_allreduce(void *g, void **ts, int n, int mean, char **err);
// int captiongo_dist_broadcast(void *g, void **ts, int n, int root, char **err);
// int captiongo_dist_barrier(void *g, char **err);
// void captiongo_dist_free(void *g);
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// Built reports whether collectives are built in (the c10d tag).
const Built = true

// Group is this process's membership of the run's process group.
type Group struct {
	Env
	g unsafe.Pointer
}

// Join rendezvouses with the other ranks at e.Addr:e.Port (rank 0 serves
// the store) and opens the Gloo process group. timeout bounds the rendezvous
// and every collective: a rank that dies or hangs makes the others' next
// collective fail within it.
func Join(e Env, timeout time.Duration) (*Group, error) {
	addr := C.CString(e.Addr)
	defer C.free(unsafe.Pointer(addr))
	var cerr *C.char
	g := C.captiongo_dist_new(addr, C.int(e.Port), C.int(e.Rank), C.int(e.World), C.int64_t(timeout.Milliseconds()),
		&cerr)
	if g == nil {
		return nil, fmt.Errorf("rank %d of %d: rendezvous at %s:%d (MASTER_ADDR, MASTER_PORT): %w", e.Rank, e.World,
			e.Addr, e.Port, cErr(cerr))
	}
	return &Group{Env: e, g: g}, nil
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
