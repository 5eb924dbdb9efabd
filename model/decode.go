package model

import (
	"fmt"
	"math"
	"sort"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
)

// Stepper is a decoder seen one token at a time over R rows (hypotheses).
type Stepper interface {
	// Step feeds one token per row and returns the rows' next-token
	// log-probabilities, R x V row-major, and V.
	Step(tokens []int64) ([]float32, int)
	// Reorder keeps, duplicates or reorders rows: new row i is old row rows[i].
	Reorder(rows []int64)
}

// Hypothesis is a decoded caption: word ids without <SOS>/<EOS>, and the
// total log-probability of the tokens emitted (the final <EOS> included).
type Hypothesis struct {
	Tokens  []int
	LogProb float64
}

// IDs is the hypothesis as the decoder reads it back: <SOS>, the words, <EOS>
// (what WordLogit, AttentionWeights and the explanations take).
func (h Hypothesis) IDs() []int64 {
	ids := make([]int64, 0, len(h.Tokens)+2)
	ids = append(ids, data.SOS)
	for _, t := range h.Tokens {
		ids = append(ids, int64(t))
	}
	return append(ids, data.EOS)
}

func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// ArgmaxStepper is a Stepper that can also return only each row's most
// likely next token and its log-probability (computed where the model runs,
// so that a greedy step copies R values instead of R x V).
type ArgmaxStepper interface {
	Stepper
	StepArgmax(tokens []int64) (ids []int64, logp []float32)
}

// Greedy decodes rows sequences by taking the most likely token at each step,
// up to maxLen tokens, stopping a row at <EOS>.
func Greedy(s Stepper, rows, maxLen int) []Hypothesis {
	return decodeRows(rows, maxLen, argmaxStep(s))
}

// decodeRows runs rows sequences from <SOS>, one token per row and step as
// step chooses it (with its log-probability), up to maxLen tokens; a row stops
// at <EOS> and is fed <EOS> from then on.
func decodeRows(rows, maxLen int, step func(tok []int64) (ids []int64, logp []float32)) []Hypothesis {
	out := make([]Hypothesis, rows)
	done := make([]bool, rows)
	tok := make([]int64, rows)
	for i := range tok {
		tok[i] = data.SOS
	}
	left := rows
	for t := 0; t < maxLen && left > 0; t++ {
		ids, lp := step(tok)
		for r := 0; r < rows; r++ {
			if done[r] {
				tok[r] = data.EOS
				continue
			}
			w := int(ids[r])
			out[r].LogProb += float64(lp[r])
			tok[r] = int64(w)
			if w == data.EOS {
				done[r] = true
				left--
				continue
			}
			out[r].Tokens = append(out[r].Tokens, w)
		}
	}
	return out
}

// argmaxStep returns the stepper's own StepArgmax, or one that takes the arg
// max of Step's full distributions.
func argmaxStep(s Stepper) func([]int64) ([]int64, []float32) {
	if as, ok := s.(ArgmaxStepper); ok {
		return as.StepArgmax
	}
	return func(tok []int64) ([]int64, []float32) {
		lp, V := s.Step(tok)
		ids, best := make([]int64, len(tok)), make([]float32, len(tok))
		for r := range tok {
			row := lp[r*V : (r+1)*V]
			w := argmax(row)
			ids[r], best[r] = int64(w), row[w]
		}
		return ids, best
	}
}

// TopKStepper is a Stepper that returns only each row's k best next tokens
// with their log-probabilities (rows x k, best first), computed where the
// model runs.
type TopKStepper interface {
	Stepper
	StepTopK(tokens []int64, k int) (ids []int64, logp []float32)
}

type beamHyp struct {
	tokens []int
	logp   float64
	last   int64
}

// Beam decodes batch sequences with beam size k: at each step every live
// hypothesis is extended by its k best tokens, the k best extensions per image
// stay live, extensions by <EOS> are finished. It stops an image when it has k
// finished hypotheses or at maxLen tokens, and returns per image the finished
// hypothesis with the best length-normalised score logp / len^alpha (len counts
// <EOS>; alpha 0 = total log-probability). The stepper starts with batch rows;
// Beam reorders it to batch*k rows. With k = 1 it is Greedy.
func Beam(s Stepper, batch, k, maxLen int, alpha float64) []Hypothesis {
	if k <= 1 {
		return Greedy(s, batch, maxLen)
	}
	rows := make([]int64, batch*k)
	for i := range rows {
		rows[i] = int64(i / k)
	}
	s.Reorder(rows)
	live := make([][]beamHyp, batch)
	for b := range live {
		live[b] = []beamHyp{{last: data.SOS}}
	}
	finished := make([][]beamHyp, batch)
	active := batch
	score := func(h beamHyp) float64 {
		return h.logp / math.Pow(float64(len(h.tokens)+1), alpha)
	}
	tok := make([]int64, batch*k)
	for t := 0; t < maxLen && active > 0; t++ {
		for b := 0; b < batch; b++ {
			for j := 0; j < k; j++ {
				tok[b*k+j] = data.EOS
				if j < len(live[b]) {
					tok[b*k+j] = live[b][j].last
				}
			}
		}
		// Each live row's k best extensions: from the stepper when it can give
		// them directly, else from the full distribution.
		var cid []int64
		var clp []float32
		if tks, ok := s.(TopKStepper); ok {
			cid, clp = tks.StepTopK(tok, k)
		} else {
			lp, V := s.Step(tok)
			cid, clp = make([]int64, batch*k*k), make([]float32, batch*k*k)
			for r := 0; r < batch*k; r++ {
				row := lp[r*V : (r+1)*V]
				for j, w := range topK(row, k) {
					cid[r*k+j], clp[r*k+j] = int64(w), row[w]
				}
			}
		}
		next := make([]int64, batch*k)
		for b := 0; b < batch; b++ {
			for j := range next[b*k : (b+1)*k] {
				next[b*k+j] = int64(b * k) // default: keep row 0 of the image
			}
			if len(live[b]) == 0 {
				continue
			}
			type cand struct {
				logp float64
				from int
				w    int
			}
			var cands []cand
			for j, h := range live[b] {
				r := b*k + j
				for x := 0; x < k; x++ {
					cands = append(cands, cand{h.logp + float64(clp[r*k+x]), j, int(cid[r*k+x])})
				}
			}
			sort.SliceStable(cands, func(x, y int) bool { return cands[x].logp > cands[y].logp })
			var nl []beamHyp
			for _, c := range cands {
				if len(nl) == k {
					break
				}
				h := live[b][c.from]
				nh := beamHyp{tokens: append(append([]int(nil), h.tokens...), c.w), logp: c.logp, last: int64(c.w)}
				if c.w == data.EOS {
					nh.tokens = nh.tokens[:len(nh.tokens)-1]
					finished[b] = append(finished[b], nh)
					continue
				}
				next[b*k+len(nl)] = int64(b*k + c.from)
				nl = append(nl, nh)
			}
			live[b] = nl
			if len(finished[b]) >= k || len(nl) == 0 {
				live[b] = nil
				active--
			}
		}
		if active > 0 {
			s.Reorder(next)
		}
	}
	out := make([]Hypothesis, batch)
	for b := 0; b < batch; b++ {
		pool := finished[b]
		if len(pool) == 0 {
			pool = live[b] // reached maxLen without <EOS>
		}
		best := 0
		for i := range pool {
			if score(pool[i]) > score(pool[best]) {
				best = i
			}
		}
		if len(pool) > 0 {
			out[b] = Hypothesis{Tokens: pool[best].tokens, LogProb: pool[best].logp}
		}
	}
	return out
}

// topK returns the indices of the k largest values (ties: lower index first).
func topK(row []float32, k int) []int {
	idx := make([]int, 0, k+1)
	for i, v := range row {
		if len(idx) == k && v <= row[idx[k-1]] {
			continue
		}
		pos := len(idx)
		for pos > 0 && v > row[idx[pos-1]] {
			pos--
		}
		idx = append(idx, 0)
		copy(idx[pos+1:], idx[pos:])
		idx[pos] = i
		if len(idx) > k {
			idx = idx[:k]
		}
	}
	return idx
}

// NewStepper runs the image step for a batch of images (eval mode, no
// gradient) and returns a Stepper positioned before <SOS>. Call Close after.
func (m *Captioner) NewStepper(images *ts.Tensor) Stepper {
	var st Stepper
	torch.NoGrad(func() {
		f := m.Features(images, false)
		st = m.stepperFrom(f)
		f.MustDrop()
	})
	return st
}

func (m *Captioner) stepperFrom(f *ts.Tensor) Stepper { return m.dec.stepper(f) }

// StepperFromFeatures starts decoding from the decoder's features (what
// Features returns, or the feature cache holds): pooled N x 2048 for the LSTM,
// the map rows N x P x 2048 for the attention decoder.
func (m *Captioner) StepperFromFeatures(feat *ts.Tensor) Stepper {
	var st Stepper
	torch.NoGrad(func() { st = m.stepperFrom(feat) })
	return st
}

// CloseStepper frees a stepper made by NewStepper.
func CloseStepper(s Stepper) {
	if c, ok := s.(interface{ Close() }); ok {
		c.Close()
	}
}

// Caption decodes a batch of images: beam 1 is greedy.
func (m *Captioner) Caption(images *ts.Tensor, beam, maxLen int) []Hypothesis {
	B := int(images.MustSize()[0])
	s := m.NewStepper(images)
	defer CloseStepper(s)
	return Beam(s, B, beam, maxLen, 1)
}

// GreedyAttention decodes greedily from features (Features' map rows, N x P
// x D) with the attention decoder and also returns, per image, the attention
// weights of every emitted word and of the final <EOS> ([image][word][place]).
func (m *Captioner) GreedyAttention(feat *ts.Tensor, maxLen int) ([]Hypothesis, [][][]float32, error) {
	d, ok := m.dec.(*attnDecoder)
	if !ok {
		return nil, nil, fmt.Errorf("the %q decoder has no attention weights", m.Cfg.Decoder)
	}
	var st *attnStepper
	torch.NoGrad(func() { st = &attnStepper{d: d, s: d.start(feat), record: true} })
	defer st.Close()
	N := int(feat.MustSize()[0])
	P := int(feat.MustSize()[1])
	hs := Greedy(st, N, maxLen)
	ws := make([][][]float32, N)
	for r := range ws {
		steps := min(len(hs[r].Tokens)+1, len(st.alphas)) // the words, then <EOS> (if reached)
		for t := 0; t < steps; t++ {
			ws[r] = append(ws[r], st.alphas[t][r*P:(r+1)*P])
		}
	}
	return hs, ws, nil
}
