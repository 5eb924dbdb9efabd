package metrics

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

var words = strings.Fields(
	"a the dog dogs man woman girl boy red blue green grass water ball runs jumps is are on in with and of two three " +
		"white black playing sitting standing near",
)

// corpus generates images with 1-5 references and one hypothesis each:
// punctuation, capitals, repeated words, clitics, empty and one-word hypotheses.
func corpus(n int, seed uint64) (ids []string, refs map[string][]string, hyps map[string]string) {
	r := rand.New(rand.NewPCG(seed, 11))
	sentence := func(min, max int) string {
		k := min + r.IntN(max-min+1)
		var b []string
		for i := 0; i < k; i++ {
			w := words[r.IntN(len(words))]
			switch r.IntN(12) {
			case 0:
				w = strings.ToUpper(w[:1]) + w[1:]
			case 1:
				w += ","
			case 2:
				w += "'s"
			case 3:
				b = append(b, w) // repeated word
			case 4:
				w = `"` + w + `"`
			}
			b = append(b, w)
		}
		s := strings.Join(b, " ")
		switch r.IntN(4) {
		case 0:
			s += " ."
		case 1:
			s += "!"
		case 2:
			s += "?"
		}
		return s
	}
	refs, hyps = map[string][]string{}, map[string]string{}
	for i := 0; i < n; i++ {
		id := fmt.Sprint(1000 + i)
		ids = append(ids, id)
		for j := 0; j < 1+r.IntN(5); j++ {
			refs[id] = append(refs[id], sentence(3, 14))
		}
		switch {
		case i%37 == 5:
			hyps[id] = "" // empty hypothesis
		case i%23 == 3:
			hyps[id] = words[r.IntN(len(words))] // one word
		case i%19 == 7:
			hyps[id] = refs[id][0] // exact copy of a reference
		default:
			hyps[id] = sentence(1, 14)
		}
	}
	return ids, refs, hyps
}

const pyScore = `
import json, sys
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
rows = json.load(open(sys.argv[1]))
gts = {r[0]: [{"caption": c} for c in r[1]] for r in rows}
res = {r[0]: [{"caption": r[2]}] for r in rows}
tok = PTBTokenizer()
gts, res = tok.tokenize(gts), tok.tokenize(res)
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    b, _ = Bleu(4).compute_score(gts, res)
c, _ = Cider().compute_score(gts, res)
print(json.dumps({"Bleu_1": b[0], "Bleu_2": b[1], "Bleu_3": b[2], "Bleu_4": b[3], "CIDEr": float(c)}))
`

func pycoco(t *testing.T, ids []string, refs map[string][]string, hyps map[string]string) Scores {
	t.Helper()
	testutil.Java(t)
	var rows [][]any
	for _, id := range ids {
		rows = append(rows, []any{id, refs[id], hyps[id]})
	}
	p := filepath.Join(t.TempDir(), "corpus.json")
	b, _ := json.Marshal(rows)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var s Scores
	out := testutil.RunPython(t, pyScore, p)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("pycocoevalcap printed %q: %v", out, err)
	}
	return s
}

// TestParityWithPycocoevalcap: BLEU-1..4 and CIDEr-D equal pycocoevalcap's to 1e-6.
func TestParityWithPycocoevalcap(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		ids, refs, hyps := corpus(300, seed)
		// pycocoevalcap's tokenizer wrapper drops trailing empty lines; keep the last hypothesis non-empty.
		if hyps[ids[len(ids)-1]] == "" {
			hyps[ids[len(ids)-1]] = "a dog"
		}
		want := pycoco(t, ids, refs, hyps)
		got, err := Score(ids, refs, hyps)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d, 300 images: captiongo %+v\n                            pycocoevalcap %+v", seed, got, want)
		for _, c := range []struct {
			name    string
			go_, py float64
		}{{"Bleu_1", got.Bleu1, want.Bleu1}, {"Bleu_2", got.Bleu2, want.Bleu2}, {"Bleu_3", got.Bleu3, want.Bleu3}, {"Bleu_4",
			got.Bleu4, want.Bleu4}, {"CIDEr", got.CIDEr, want.CIDEr}} {
			if math.Abs(c.go_-c.py) > 1e-6 {
				t.Errorf("seed %d %s: captiongo %.9f, pycocoevalcap %.9f", seed, c.name, c.go_, c.py)
			}
		}
	}
}

// TestPerfectAndDisjoint pins the ends of the scale.
func TestPerfectAndDisjoint(t *testing.T) {
	refs := [][]string{{"a dog runs on the grass", "a dog is running"}, {"two men play ball in a park"}}
	b := Bleu([]string{"a dog runs on the grass", "two men play ball in a park"}, refs)
	for k, v := range b {
		if math.Abs(v-1) > 1e-6 {
			t.Errorf("BLEU-%d of exact copies = %v, want 1", k+1, v)
		}
	}
	b = Bleu([]string{"zebra zebra zebra", "kite kite kite"}, refs)
	if b[0] > 1e-6 {
		t.Errorf("BLEU-1 of disjoint words = %v, want 0", b[0])
	}
	if c := CiderD([]string{"zebra", "kite"}, refs); c != 0 {
		t.Errorf("CIDEr-D of disjoint words = %v, want 0", c)
	}
}

// TestCiderDeterministic: CIDEr-D's sums run in a fixed order (the n-grams'
// first appearance, as pycocoevalcap's dictionaries keep them), so scoring the
// same corpus again gives the same bits, whatever Go's map order.
func TestCiderDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		ids, refs, hyps := corpus(300, seed)
		hs := make([]string, len(ids))
		rs := make([][]string, len(ids))
		for i, id := range ids {
			hs[i], rs[i] = hyps[id], refs[id]
		}
		first := CiderD(hs, rs)
		for i := 0; i < 40; i++ {
			if got := CiderD(hs, rs); got != first {
				t.Fatalf("corpus %d, run %d: CIDEr-D %v, first run %v (differ by %.3g)", seed, i+2, got, first,
					got-first)
			}
		}
	}
}

// TestCiderDScorerPerCaption: the one-caption scorer (self-critical
// training's reward) gives pycocoevalcap's per-image CIDEr-D scores when its
// document frequencies come from the same references.
func TestCiderDScorerPerCaption(t *testing.T) {
	ids, refs, hyps := corpus(200, 4)
	if hyps[ids[len(ids)-1]] == "" {
		hyps[ids[len(ids)-1]] = "a dog"
	}
	tk, err := Tokenize(ids, refs, hyps)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	for i, id := range ids {
		rows = append(rows, []any{id, tk.Refs[i], tk.Hyps[i]})
	}
	p := filepath.Join(t.TempDir(), "tok.json")
	b, _ := json.Marshal(rows)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, `
import json, sys
from pycocoevalcap.cider.cider import Cider
rows = json.load(open(sys.argv[1]))
gts = {r[0]: r[1] for r in rows}
res = {r[0]: [r[2]] for r in rows}
_, per = Cider().compute_score(gts, res)
print(json.dumps([float(v) for v in per]))
`, p)
	var want []float64
	if err := json.Unmarshal([]byte(out), &want); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := NewCiderDScorer(tk.Refs)
	worst := 0.0
	for i := range ids {
		worst = math.Max(worst, math.Abs(s.Score(tk.Hyps[i], tk.Refs[i])-want[i]))
	}
	t.Logf("%d captions: max |captiongo - pycocoevalcap| = %.3g", len(ids), worst)
	if worst > 1e-9 {
		t.Errorf("per-caption CIDEr-D differs from pycocoevalcap's by %.3g", worst)
	}
}
