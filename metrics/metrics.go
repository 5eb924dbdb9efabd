// Package metrics scores captions as the COCO caption evaluation code
// (pycocoevalcap) does: the same tokenisation (PTB rules, lower case,
// punctuation dropped), corpus BLEU-1..4 with the closest reference length,
// and CIDEr-D (sigma 6, n-grams 1-4, idf over the evaluated images' references,
// clipped tf-idf, Gaussian length penalty, x10).
package metrics

import (
	"fmt"
	"math"
	"strings"

	"github.com/captiongo/captiongo/data"
)

// Scores holds the COCO evaluation's numbers under its own key names.
type Scores struct {
	Bleu1 float64 `json:"Bleu_1"`
	Bleu2 float64 `json:"Bleu_2"`
	Bleu3 float64 `json:"Bleu_3"`
	Bleu4 float64 `json:"Bleu_4"`
	CIDEr float64 `json:"CIDEr"`
	// METEOR is filled by the caller when Java and the METEOR 1.5 jar are present.
	METEOR *float64 `json:"METEOR,omitempty"`
}

// Tokenized is a corpus after COCO tokenisation: per image, its references and
// its one hypothesis as space-joined tokens.
type Tokenized struct {
	IDs  []string
	Refs [][]string
	Hyps []string
}

// Tokenize tokenises references and hypotheses as pycocoevalcap does: all
// references in image order as one batch of lines, then all hypotheses.
func Tokenize(ids []string, refs map[string][]string, hyps map[string]string) (Tokenized, error) {
	var refLines, hypLines []string
	for _, id := range ids {
		r, ok := refs[id]
		if !ok || len(r) == 0 {
			return Tokenized{}, fmt.Errorf("image %s has no reference captions", id)
		}
		h, ok := hyps[id]
		if !ok {
			return Tokenized{}, fmt.Errorf("image %s has no hypothesis", id)
		}
		refLines = append(refLines, r...)
		hypLines = append(hypLines, h)
	}
	rt, ht := data.TokenizeLines(refLines), data.TokenizeLines(hypLines)
	out := Tokenized{IDs: ids, Hyps: make([]string, len(ids)), Refs: make([][]string, len(ids))}
	k := 0
	for i, id := range ids {
		for range refs[id] {
			out.Refs[i] = append(out.Refs[i], strings.Join(rt[k], " "))
			k++
		}
		out.Hyps[i] = strings.Join(ht[i], " ")
	}
	return out, nil
}

// Score tokenises and computes BLEU-1..4 and CIDEr-D over the images in ids.
func Score(ids []string, refs map[string][]string, hyps map[string]string) (Scores, error) {
	if len(ids) == 0 {
		return Scores{}, fmt.Errorf("no images to score")
	}
	t, err := Tokenize(ids, refs, hyps)
	if err != nil {
		return Scores{}, err
	}
	b := Bleu(t.Hyps, t.Refs)
	return Scores{Bleu1: b[0], Bleu2: b[1], Bleu3: b[2], Bleu4: b[3], CIDEr: CiderD(t.Hyps, t.Refs)}, nil
}

type ngramCounts map[string]int

// precook counts the 1..n-grams of a space-separated sentence (keys join the
// words with a space, which no token holds).
func precook(s string, n int) (int, ngramCounts) {
	l, c, _ := precookOrdered(s, n)
	return l, c
}

// precookOrdered is precook that also lists the n-grams in the order they
// first appear (n = 1 first), the order pycocoevalcap's dictionaries keep:
// CIDEr-D's sums run in it, so the score does not depend on Go's map order.
func precookOrdered(s string, n int) (int, ngramCounts, []string) {
	words := strings.Fields(s)
	c := ngramCounts{}
	var keys []string
	for k := 1; k <= n; k++ {
		for i := 0; i+k <= len(words); i++ {
			g := strings.Join(words[i:i+k], " ")
			if c[g] == 0 {
				keys = append(keys, g)
			}
			c[g]++
		}
	}
	return len(words), c, keys
}

func order(ngram string) int { return strings.Count(ngram, " ") + 1 }

// Bleu is pycocoevalcap's corpus BLEU-1..4 (BleuScorer, option "closest"):
// clipped n-gram matches and guesses summed over the corpus, the reference
// length per sentence the closest one (ties: the shorter), tiny = 1e-15 and
// small = 1e-9 as in the original.
func Bleu(hyps []string, refs [][]string) [4]float64 {
	const n, small, tiny = 4, 1e-9, 1e-15
	var correct, guess [n]int
	testTotal, refTotal := 0, 0
	for i, h := range hyps {
		maxc := ngramCounts{}
		var reflens []int
		for _, r := range refs[i] {
			l, c := precook(r, n)
			reflens = append(reflens, l)
			for g, v := range c {
				if v > maxc[g] {
					maxc[g] = v
				}
			}
		}
		tl, c := precook(h, n)
		best := reflens[0]
		for _, l := range reflens[1:] {
			if d, bd := abs(l-tl), abs(best-tl); d < bd || (d == bd && l < best) {
				best = l
			}
		}
		testTotal += tl
		refTotal += best
		for k := 0; k < n; k++ {
			guess[k] += max(0, tl-k)
		}
		for g, v := range c {
			correct[order(g)-1] += min(maxc[g], v)
		}
	}
	var out [4]float64
	bleu := 1.0
	for k := 0; k < n; k++ {
		bleu *= (float64(correct[k]) + tiny) / (float64(guess[k]) + small)
		out[k] = math.Pow(bleu, 1/float64(k+1))
	}
	ratio := (float64(testTotal) + tiny) / (float64(refTotal) + small)
	if ratio < 1 {
		for k := range out {
			out[k] *= math.Exp(1 - 1/ratio)
		}
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// CiderD is pycocoevalcap's CIDEr (which is CIDEr-D): per image the mean over
// references and n = 1..4 of the clipped tf-idf cosine times a Gaussian
// penalty on the length difference (sigma 6; "length" is the bigram count, as
// in the original), times 10; the corpus score is the mean over images, with
// document frequencies from the evaluated images' own references.
func CiderD(hyps []string, refs [][]string) float64 {
	s := NewCiderDScorer(refs)
	total := 0.0
	for i, h := range hyps {
		total += s.Score(h, refs[i])
	}
	return total / float64(len(hyps))
}

// CiderDScorer scores one caption at a time by CIDEr-D, with the document
// frequencies of a fixed corpus of reference sets: the evaluated images' own
// (CiderD, as pycocoevalcap), or the training split's, as self-critical
// training's reward does. Captions are tokenised strings (Tokenize).
type CiderDScorer struct {
	df     map[string]float64
	refLen float64 // log of the corpus's image count
}

// NewCiderDScorer fixes the document frequencies from corpus: each element is
// one image's references; an n-gram counts once per image.
func NewCiderDScorer(corpus [][]string) *CiderDScorer {
	s := &CiderDScorer{df: map[string]float64{}, refLen: math.Log(float64(len(corpus)))}
	for _, rs := range corpus {
		seen := map[string]bool{}
		for _, r := range rs {
			_, c := precook(r, cider.n)
			for g := range c {
				seen[g] = true
			}
		}
		for g := range seen {
			s.df[g]++
		}
	}
	return s
}

// cider holds CIDEr-D's constants.
var cider = struct {
	n     int
	sigma float64
}{4, 6}

// ciderVec is a caption's tf-idf vectors, one per n-gram order.
type ciderVec struct {
	w      [4]map[string]float64
	keys   [4][]string // the n-grams of each order in first-appearance order
	norm   [4]float64
	length int // bigram count
}

func (s *CiderDScorer) vec(caption string) ciderVec {
	_, c, keys := precookOrdered(caption, cider.n)
	var v ciderVec
	for k := range v.w {
		v.w[k] = map[string]float64{}
	}
	for _, g := range keys {
		tf := c[g]
		k := order(g) - 1
		w := float64(tf) * (s.refLen - math.Log(math.Max(1, s.df[g])))
		v.w[k][g] = w
		v.keys[k] = append(v.keys[k], g)
		v.norm[k] += w * w
		if k == 1 {
			v.length += tf
		}
	}
	for k := range v.norm {
		v.norm[k] = math.Sqrt(v.norm[k])
	}
	return v
}

// Score is one caption's CIDEr-D against its references (pycocoevalcap's
// per-image score).
func (s *CiderDScorer) Score(hyp string, refs []string) float64 {
	if len(refs) == 0 {
		return 0
	}
	hv := s.vec(hyp)
	var score [4]float64
	for _, r := range refs {
		rv := s.vec(r)
		delta := float64(hv.length - rv.length)
		for k := 0; k < cider.n; k++ {
			val := 0.0
			for _, g := range hv.keys[k] {
				w, r := hv.w[k][g], rv.w[k][g]
				val += math.Min(w, r) * r
			}
			if hv.norm[k] != 0 && rv.norm[k] != 0 {
				val /= hv.norm[k] * rv.norm[k]
			}
			score[k] += val * math.Exp(-(delta*delta)/(2*cider.sigma*cider.sigma))
		}
	}
	mean := (score[0] + score[1] + score[2] + score[3]) / float64(cider.n)
	return mean / float64(len(refs)) * 10
}
