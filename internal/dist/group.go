package dist

import (
	"errors"
	"fmt"
	"strings"
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
