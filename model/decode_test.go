package model

import (
	"math"
	"reflect"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
)

// markov is a hand-built decoder whose next-token distribution depends only on
// the last token: vocabulary <PAD> <SOS> <EOS> A B.
type markov struct {
	last  []int64
	table map[int64][]float64
}

const tokA, tokB = 3, 4

func newMarkov() *markov {
	return &markov{table: map[int64][]float64{
		data.SOS: {0, 0, 0, 0.6, 0.4},     // greedy takes A
		tokA:     {0, 0, 0.4, 0.3, 0.3},   // A then <EOS>: 0.6 * 0.4 = 0.24
		tokB:     {0, 0, 0.9, 0.05, 0.05}, // B then <EOS>: 0.4 * 0.9 = 0.36, the best sequence
		data.EOS: {0, 0, 1, 0, 0},
	}}
}

func (m *markov) Step(tokens []int64) ([]float32, int) {
	out := make([]float32, 0, 5*len(tokens))
	for _, t := range tokens {
		for _, p := range m.table[t] {
			out = append(out, float32(math.Log(p)))
		}
	}
	return out, 5
}

func (m *markov) Reorder([]int64) {}

func TestBeamFindsWhatGreedyMisses(t *testing.T) {
	g := Greedy(newMarkov(), 1, 10)[0]
	if !reflect.DeepEqual(g.Tokens, []int{tokA}) || math.Abs(g.LogProb-math.Log(0.24)) > 1e-6 {
		t.Errorf("greedy = %+v, want [A] with log 0.24", g)
	}
	b := Beam(newMarkov(), 1, 3, 10, 0)[0]
	if !reflect.DeepEqual(b.Tokens, []int{tokB}) || math.Abs(b.LogProb-math.Log(0.36)) > 1e-6 {
		t.Errorf("beam 3 = %+v, want [B] with log 0.36 (the best total log-probability)", b)
	}
	if b1 := Beam(newMarkov(), 1, 1, 10, 0)[0]; !reflect.DeepEqual(b1, g) {
		t.Errorf("beam 1 = %+v, greedy = %+v", b1, g)
	}
}

func TestTopK(t *testing.T) {
	if got := topK([]float32{0.1, 0.5, 0.3, 0.5, -1}, 3); !reflect.DeepEqual(got, []int{1, 3, 2}) {
		t.Errorf("topK = %v", got)
	}
}

// TestDecodingOnTheLSTM: beam 1 equals greedy on the real decoder, beam 3's
// best hypothesis is at least as likely per token as greedy's, and decoding
// leaves no tensor behind.
func TestDecodingOnTheLSTM(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(3)
		m, err := NewCaptioner(Config{VocabSize: 12, EmbedSize: 8, HiddenSize: 16, NumLayers: 2}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		x := ts.MustRandn([]int64{3, 3, 75, 75}, gotch.Float, gotch.CPU)
		defer x.MustDrop()
		m.Caption(x, 1, 5) // warm up lazily created state
		var g, g2, b3 []Hypothesis
		before, after := liveTensorsAround(func() {
			g = m.Caption(x, 1, 12)
			s := m.NewStepper(x)
			g2 = Greedy(s, 3, 12)
			CloseStepper(s)
			b3 = m.Caption(x, 3, 12)
		})
		if after > before {
			t.Errorf("decoding leaked %d tensor(s)", after-before)
		}
		if !reflect.DeepEqual(g, g2) {
			t.Errorf("beam 1 %+v != greedy %+v", g, g2)
		}
		for i := range g {
			if len(g[i].Tokens) == 0 && g[i].LogProb == 0 {
				t.Errorf("image %d: empty greedy result", i)
			}
			gs := g[i].LogProb / float64(len(g[i].Tokens)+1)
			bs := b3[i].LogProb / float64(len(b3[i].Tokens)+1)
			if bs < gs-1e-6 {
				t.Errorf("image %d: beam 3 score %.4f < greedy %.4f", i, bs, gs)
			}
		}
	})
}

// TestInputTableDecoding: a one-layer decoder's greedy and beam decoding
// through the cached input table give the tokens and log-probabilities of the
// plain step (embedding and W_ih every step), and the table follows the
// weights: after loading new embedding values (copy_, as LoadFile does) and
// after an Adam step, decoding still matches the plain step, which it would
// not with a stale table.
func TestInputTableDecoding(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(5)
		m, err := NewCaptioner(Config{VocabSize: 40, EmbedSize: 8, HiddenSize: 16, NumLayers: 1}, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		pooled := ts.MustRandn([]int64{4, 2048}, gotch.Float, gotch.CPU)
		defer pooled.MustDrop()
		decode := func(table bool) (g, b []Hypothesis) {
			useInputTable = table
			defer func() { useInputTable = true }()
			return greedyAndBeam(m, pooled, 4, 10)
		}
		compare := func(when string) {
			t.Helper()
			g1, b1 := decode(true)
			if m.baseline().inTable.out == nil {
				t.Fatalf("%s: no input table was built", when)
			}
			g0, b0 := decode(false)
			for _, c := range []struct {
				name  string
				table []Hypothesis
				plain []Hypothesis
			}{{"greedy", g1, g0}, {"beam 3", b1, b0}} {
				for i := range c.table {
					if !reflect.DeepEqual(c.table[i].Tokens, c.plain[i].Tokens) ||
						math.Abs(c.table[i].LogProb-c.plain[i].LogProb) > 1e-4 {
						t.Errorf("%s, %s, image %d: with the table %v (%.6f), plain step %v (%.6f)", when, c.name, i,
							c.table[i].Tokens, c.table[i].LogProb, c.plain[i].Tokens, c.plain[i].LogProb)
					}
				}
			}
		}
		compare("fresh weights")

		// New embedding values loaded in place.
		fresh := ts.MustRandn(m.baseline().embed.MustSize(), gotch.Float, gotch.CPU)
		torch.NoGrad(func() { m.baseline().embed.Copy_(fresh) })
		fresh.MustDrop()
		compare("after loading the embedding")

		// One Adam step on a teacher-forced loss (moves embed, W_ih and b_ih).
		adam := NewAdam(m.VS, 0)
		tok := torch.FromInt64s([]int64{1, 5, 9, 2, 1, 7, 3, 2, 1, 11, 4, 2, 1, 6, 8, 2}, []int64{4, 4}, gotch.CPU)
		defer tok.MustDrop()
		adam.ZeroGrad()
		feat := m.Head(pooled, true)
		logits := m.DecodeTeacher(feat, tok, true)
		loss := Loss(logits, tok)
		loss.MustBackward()
		adam.Step(0.5)
		loss.MustDrop()
		logits.MustDrop()
		feat.MustDrop()
		compare("after an Adam step")
	})
}
