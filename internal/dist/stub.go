//go:build !c10d

package dist

import (
	"time"

	"github.com/sugarme/gotch/ts"
)

// Built reports whether collectives are built in (the c10d tag).
const Built = false

// Group is this process's membership of the run's process group.
type Group struct {
	Env
	Backends string
}

// Join reports that this build has no collectives.
func Join(e Env, timeout time.Duration) (*Group, error) { return nil, ErrNotBuilt }

// AllReduce is not built in.
func (g *Group) AllReduce(xs []*ts.Tensor, mean bool) error { return ErrNotBuilt }

// Broadcast is not built in.
func (g *Group) Broadcast(xs []*ts.Tensor, root int) error { return ErrNotBuilt }

// Barrier is not built in.
func (g *Group) Barrier() error { return ErrNotBuilt }

// Close does nothing.
func (g *Group) Close() {}

// Reducer is not built in.
type Reducer struct{}

// NewReducer is not built in.
func (g *Group) NewReducer(params []*ts.Tensor, bucketBytes, firstBytes int64) (*Reducer, error) {
	return nil, ErrNotBuilt
}

// Backward is not built in.
func (r *Reducer) Backward(loss *ts.Tensor) error { return ErrNotBuilt }

// Close does nothing.
func (r *Reducer) Close() {}
