//go:build c10d

package dist

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// TestMain runs a rank's part when the test binary is started as a worker.
func TestMain(m *testing.M) {
	if w := os.Getenv("CAPTIONGO_DIST_TEST"); w != "" {
		if err := worker(w); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func worker(mode string) error {
	e, ok, err := FromEnv(os.Getenv)
	if err != nil || !ok {
		return fmt.Errorf("worker env: %v %v", ok, err)
	}
	g, err := Join(e, 5*time.Second)
	if err != nil {
		return err
	}
	defer g.Close()
	if mode == "die" {
		// Everyone meets first, so the full mesh is up: a rank that dies
		// inside the others' rendezvous fails them there instead (CI saw it).
		if err := g.Barrier(); err != nil {
			return err
		}
		if e.Rank == 1 {
			time.Sleep(time.Second) // the others are inside the allreduce by now
			os.Exit(3)              // without a word to the others
		}
	}
	// Rank r holds r+1 everywhere and 10*(r+1) in a second tensor.
	a := ts.MustOfSlice([]float32{float32(e.Rank + 1), float32(e.Rank + 1), float32(e.Rank + 1)})
	b := ts.MustOfSlice([]float32{float32(10 * (e.Rank + 1))}).MustView([]int64{1, 1}, true)
	if err := g.AllReduce([]*ts.Tensor{a, b}, mode == "mean"); err != nil {
		return err
	}
	c := ts.MustOfSlice([]float32{float32(e.Rank), 7})
	if err := g.Broadcast([]*ts.Tensor{c}, 1); err != nil {
		return err
	}
	if err := g.Barrier(); err != nil {
		return err
	}
	fmt.Printf("%v %v %v\n", torch.Float32s(a), torch.Float32s(b), torch.Float32s(c))
	return nil
}

// spawn starts world ranks of this test binary in mode and returns each
// one's output and error.
func spawn(t *testing.T, mode string, world int) ([]string, []error) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return testutil.RunRanks(t, world, port, "CAPTIONGO_DIST_TEST="+mode)
}

// TestCollectives: three processes sum and average through Gloo, broadcast
// rank 1's tensor and meet at a barrier; every rank ends with the same values.
func TestCollectives(t *testing.T) {
	for mode, want := range map[string]string{"sum": "[6 6 6] [60] [1 7]", "mean": "[2 2 2] [20] [1 7]"} {
		out, errs := spawn(t, mode, 3)
		for r := range out {
			if errs[r] != nil || out[r] != want {
				t.Errorf("%s: rank %d: %q (%v), want %q", mode, r, out[r], errs[r], want)
			}
		}
	}
}

// TestDeadPeer: when a rank dies, the others' next collective fails within
// the timeout with one line naming the rank and the collective; none hangs.
func TestDeadPeer(t *testing.T) {
	t0 := time.Now()
	out, errs := spawn(t, "die", 3)
	if took := time.Since(t0); took > 30*time.Second {
		t.Errorf("ranks took %v to end after a peer died", took)
	}
	for r := range out {
		if errs[r] == nil {
			t.Errorf("rank %d exited cleanly: %q", r, out[r])
			continue
		}
		if r != 1 && (!strings.Contains(out[r], fmt.Sprintf("rank %d of 3: allreduce failed", r)) ||
			strings.Count(out[r], "\n") > 0) {
			t.Errorf("rank %d said %q", r, out[r])
		}
	}
	t.Logf("after rank 1 died: rank 0 said %q", out[0])
}
