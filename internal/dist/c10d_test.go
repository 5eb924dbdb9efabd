//go:build c10d

package dist

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"
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
	if mode == "reducer" {
		return reducerWorker(g)
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

// reducerWorker: rank r's loss is (r+1)(|w1|^2/2 + sum(w2) + 3 sum(w3)),
// so its gradients are (r+1)(w1, 1, 3); after each Backward through the
// Reducer every rank holds their sum over the ranks. Buckets of 64 and 256
// bytes split the three tensors (400, 200 and 120 bytes) so that the sums
// run in several buckets, before and after the buckets are rebuilt.
func reducerWorker(g *Group) error {
	w1 := ts.MustArange(ts.IntScalar(100), gotch.Float, gotch.CPU).MustSetRequiresGrad(true, false)
	w2 := ts.MustZeros([]int64{50}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, false)
	w3 := ts.MustZeros([]int64{6, 5}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, false)
	params := []*ts.Tensor{w1, w2, w3}
	red, err := g.NewReducer(params, 256, 64)
	if err != nil {
		return err
	}
	defer red.Close()
	var lines []string
	for it := 0; it < 3; it++ {
		torch.ZeroGrads(params)
		sq := w1.MustMul(w1, false).MustSum(gotch.Float, true).MustMulScalar(ts.FloatScalar(0.5), true)
		s2 := w2.MustSum(gotch.Float, false)
		s3 := w3.MustSum(gotch.Float, false).MustMulScalar(ts.FloatScalar(3), true)
		loss := sq.MustAdd(s2, true).MustAdd(s3, true).MustMulScalar(ts.FloatScalar(float64(g.Rank+1)), true)
		s2.MustDrop()
		s3.MustDrop()
		if err := red.Backward(loss); err != nil {
			return err
		}
		loss.MustDrop()
		var got []string
		for _, p := range params {
			gr := p.MustGrad(false)
			v := torch.Float32s(gr)
			gr.MustDrop()
			got = append(got, fmt.Sprint(v[0], v[len(v)-1]))
		}
		lines = append(lines, strings.Join(got, ","))
	}
	fmt.Println(strings.Join(lines, " "))
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

// TestReducer: DDP's reducer sums every parameter's gradient over three
// ranks in several buckets, on the first backward (buckets in parameter
// order) and after it has rebuilt them in the order gradients arrived.
func TestReducer(t *testing.T) {
	out, errs := spawn(t, "reducer", 3)
	const step = "0 594,6 6,18 18"
	want := strings.Join([]string{step, step, step}, " ")
	for r := range out {
		if errs[r] != nil || out[r] != want {
			t.Errorf("rank %d: %q (%v), want %q", r, out[r], errs[r], want)
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
