package dist

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// ErrNotBuilt is Join's error in a build without gloo's headers.
var ErrNotBuilt = errors.New("this captiongo was built without c10d collectives: install gloo's headers " +
	"(Debian: libgloo-dev) and rebuild with make build (it then adds the c10d build tag)")

// fail names the collective, the rank and the likely cause of a failure.
func (g *Group) fail(op string, err error) error {
	return fmt.Errorf("rank %d of %d: %s failed (a peer died, hung past the timeout or left): %w", g.Rank, g.World,
		op, err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// SumGradients sums the parameters' gradients (those that are defined; every
// rank has the same ones) over the ranks in place, in one allreduce with this
// rank's loss, and returns the loss summed over the ranks.
func (g *Group) SumGradients(params []*ts.Tensor, loss float64) (float64, error) {
	var xs []*ts.Tensor
	defer func() {
		for _, x := range xs {
			x.MustDrop()
		}
	}()
	for _, p := range params {
		gr := p.MustGrad(false)
		if !gr.MustDefined() {
			gr.MustDrop()
			continue
		}
		xs = append(xs, gr)
	}
	dev := gotch.CPU
	if len(params) > 0 {
		dev = params[0].MustDevice()
	}
	l := ts.MustOfSlice([]float32{float32(loss)}).MustTo(dev, true)
	xs = append(xs, l)
	if err := g.AllReduce(xs, false); err != nil {
		return 0, err
	}
	return float64(torch.Float32s(l)[0]), nil
}
