package dist

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// DDP's bucket sizes for NewReducer: torch.nn.parallel.DistributedDataParallel's
// bucket_cap_mb = 25 and its first bucket's 1 MiB.
const (
	DDPBucketBytes      = 25 << 20
	DDPFirstBucketBytes = 1 << 20
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

// Sum returns v summed over the ranks.
func (g *Group) Sum(v float64) (float64, error) {
	x := ts.MustOfSlice([]float64{v})
	defer x.MustDrop()
	if err := g.AllReduce([]*ts.Tensor{x}, false); err != nil {
		return 0, err
	}
	return torch.Float64s(x)[0], nil
}
