package model

import (
	"unsafe"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// derived caches tensors computed from other tensors (weights, statistics)
// until one of those changes: a different handle, or a bumped version counter
// (every in-place change, such as an optimiser step or loading weights, bumps
// it). The decoder's input table and the folded BatchNorm layers use it.
type derived struct {
	out      []*ts.Tensor
	handles  []unsafe.Pointer
	versions []int64
}

// get returns the tensors compute made from the current values of from,
// computing them again (and freeing the old ones) when any of from has
// changed since; nil when compute fails.
func (d *derived) get(from []*ts.Tensor, compute func() ([]*ts.Tensor, error)) []*ts.Tensor {
	if d.out != nil && d.fresh(from) {
		return d.out
	}
	d.drop()
	out, err := compute()
	if err != nil {
		return nil
	}
	d.out = out
	for _, t := range from {
		d.handles = append(d.handles, t.Ctensor())
		d.versions = append(d.versions, torch.Version(t))
	}
	return out
}

func (d *derived) fresh(from []*ts.Tensor) bool {
	if len(from) != len(d.handles) {
		return false
	}
	for i, t := range from {
		if t.Ctensor() != d.handles[i] || torch.Version(t) != d.versions[i] {
			return false
		}
	}
	return true
}

// drop frees the cached tensors; the next get computes them again.
func (d *derived) drop() {
	for _, t := range d.out {
		t.MustDrop()
	}
	d.out, d.handles, d.versions = nil, nil, nil
}
