package model

import (
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }

// NoGradAdd1 increments an int64 counter buffer in place (BatchNorm's
// num_batches_tracked) without recording it for autograd.
func NoGradAdd1(t *ts.Tensor) {
	torch.InPlace(t, func() { t.MustAddScalar_(ts.IntScalar(1)) })
}
