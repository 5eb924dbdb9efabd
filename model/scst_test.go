package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
)

// pySCST: self-critical training's loss written out in PyTorch on fixed
// logits, sampled captions (padded after <EOS>) and advantages: the loss and
// its gradient with respect to the logits.
const pySCST = `
import sys, json, numpy as np, torch
d = sys.argv[1]
rng = np.random.default_rng(0)
T, N, V = 7, 5, 11
logits = rng.standard_normal((T - 1, N, V)).astype(np.float32)
tok = np.zeros((N, T), np.int64)
for i, n in enumerate([7, 3, 4, 2, 5]):
    tok[i, 0], tok[i, n - 1] = 1, 2
    tok[i, 1:n - 1] = rng.integers(4, V, n - 2)
adv = rng.standard_normal(N).astype(np.float32)
np.save(d + "/logits.npy", logits); np.save(d + "/tok.npy", tok.astype(np.float32)); np.save(d + "/adv.npy", adv)
L = torch.tensor(logits, requires_grad=True)
tgt = torch.from_numpy(tok[:, 1:]).t()
lp = torch.log_softmax(L, 2).gather(2, tgt.unsqueeze(2)).squeeze(2)
loss = -(torch.from_numpy(adv) * (lp * (tgt != 0).float()).sum(0)).mean()
loss.backward()
np.save(d + "/grad.npy", L.grad.numpy())
json.dump({"loss": loss.item()}, open(d + "/ref.json", "w"))
`

func TestSCSTLossMatchesPyTorch(t *testing.T) {
	var ref struct{ Loss float64 }
	dir := pythonReference(t, pySCST, &ref)
	run(t, func() {
		logits := npyTensor(t, filepath.Join(dir, "logits.npy")).MustSetRequiresGrad(true, true)
		tok := npyTensor(t, filepath.Join(dir, "tok.npy")).MustTotype(gotch.Int64, true)
		adv := npyTensor(t, filepath.Join(dir, "adv.npy"))
		loss, err := SCSTLoss(logits, tok, floats(adv))
		if err != nil {
			t.Fatal(err)
		}
		got := loss.Float64Values()[0]
		if math.Abs(got-ref.Loss) > 1e-6 {
			t.Errorf("loss %.8f, PyTorch %.8f", got, ref.Loss)
		}
		loss.MustBackward()
		g := logits.MustGrad(false)
		if d := maxRelDiff(t, g, filepath.Join(dir, "grad.npy")); d > 1e-6 {
			t.Errorf("gradient differs from PyTorch's by %.3g (relative)", d)
		} else {
			t.Logf("loss %.6f (PyTorch %.6f); gradient max relative difference %.3g", got, ref.Loss, d)
		}
		if _, err := SCSTLoss(logits, tok, []float32{1, 2}); err == nil {
			t.Error("2 advantages for 5 captions: no error")
		}
		for _, x := range []*ts.Tensor{g, loss, logits, tok, adv} {
			x.MustDrop()
		}
	})
}

// fixedStepper gives every row the same next-token log-probabilities.
type fixedStepper struct {
	lp   []float32
	rows int
}

func (f *fixedStepper) Step(tok []int64) ([]float32, int) {
	out := make([]float32, 0, len(tok)*len(f.lp))
	for range tok {
		out = append(out, f.lp...)
	}
	return out, len(f.lp)
}

func (f *fixedStepper) Reorder(rows []int64) { f.rows = len(rows) }

// TestSampleFollowsTheDistribution: Sample's first tokens follow
// softmax(log p / temperature) (a chi-square-like bound on 30,000 draws), each
// image gets k rows, <EOS> ends a caption, and a seed repeats the draw.
func TestSampleFollowsTheDistribution(t *testing.T) {
	logits := []float64{0, 1, 2, 0.5, 3, -1} // token 2 is <EOS>
	lse := 0.0
	for _, v := range logits {
		lse += math.Exp(v)
	}
	lp := make([]float32, len(logits))
	for i, v := range logits {
		lp[i] = float32(v - math.Log(lse))
	}
	for _, temp := range []float64{1, 0.5, 2} {
		want := make([]float64, len(lp))
		sum := 0.0
		for i, v := range lp {
			want[i] = math.Exp(float64(v) / temp)
			sum += want[i]
		}
		s := &fixedStepper{lp: lp}
		const rows, k = 3000, 10
		hs := Sample(s, rows, k, 1, temp, streams(1, rows*k))
		if len(hs) != rows*k || s.rows != rows*k {
			t.Fatalf("%d hypotheses over %d rows, want %d", len(hs), s.rows, rows*k)
		}
		count := make([]float64, len(lp))
		for _, h := range hs {
			if len(h.Tokens) == 0 {
				count[data.EOS]++
			} else {
				count[h.Tokens[0]]++
			}
		}
		for i := range count {
			p := want[i] / sum
			exp := p * rows * k
			if sd := math.Sqrt(exp * (1 - p)); math.Abs(count[i]-exp) > 5*sd+1 {
				t.Errorf("temperature %v: token %d drawn %v times, expected %.0f (sd %.0f)", temp, i, count[i], exp, sd)
			}
		}
	}
	s := &fixedStepper{lp: lp}
	a := Sample(s, 4, 3, 20, 1, streams(7, 12))
	b := Sample(s, 4, 3, 20, 1, streams(7, 12))
	// Rows 6..11 (images 2 and 3) sampled alone, from their own streams,
	// draw what they drew among all twelve.
	c := Sample(&fixedStepper{lp: lp}, 2, 3, 20, 1, streams(7, 12)[6:])
	for i := range a {
		if len(a[i].Tokens) != len(b[i].Tokens) || a[i].LogProb != b[i].LogProb {
			t.Fatalf("the same seed drew %v and %v", a[i], b[i])
		}
		if i >= 6 && (fmt.Sprint(c[i-6].Tokens) != fmt.Sprint(a[i].Tokens) || c[i-6].LogProb != a[i].LogProb) {
			t.Fatalf("row %d drew %v alone, %v among all", i, c[i-6], a[i])
		}
		for _, w := range a[i].Tokens {
			if w == data.EOS {
				t.Fatalf("<EOS> inside a caption: %v", a[i].Tokens)
			}
		}
	}
}

// streams are n random streams seeded (seed, row).
func streams(seed uint64, n int) []*rand.Rand {
	out := make([]*rand.Rand, n)
	for i := range out {
		out[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	return out
}
