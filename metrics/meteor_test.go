package metrics

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// TestMETEORParity: captiongo's METEOR (tokenise in Go, drive the jar) equals
// pycocoevalcap's (Java tokenizer, its Meteor class) on a generated corpus.
func TestMETEORParity(t *testing.T) {
	testutil.Java(t)
	jar := strings.TrimSpace(
		testutil.RunPython(
			t,
			`import os, pycocoevalcap.meteor.meteor as m; print(os.path.join(os.path.dirname(m.__file__), "meteor-1.5.jar"))`,
		),
	)
	ids, refs, hyps := corpus(40, 3)
	if hyps[ids[len(ids)-1]] == "" {
		hyps[ids[len(ids)-1]] = "a dog"
	}
	var rows [][]any
	for _, id := range ids {
		rows = append(rows, []any{id, refs[id], hyps[id]})
	}
	p := filepath.Join(t.TempDir(), "corpus.json")
	b, _ := json.Marshal(rows)
	os.WriteFile(p, b, 0o644)
	out := testutil.RunPython(t, `
import json, sys
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocoevalcap.meteor.meteor import Meteor
rows = json.load(open(sys.argv[1]))
gts = {r[0]: [{"caption": c} for c in r[1]] for r in rows}
res = {r[0]: [{"caption": r[2]}] for r in rows}
tok = PTBTokenizer()
gts, res = tok.tokenize(gts), tok.tokenize(res)
s, _ = Meteor().compute_score(gts, res)
print(s)
`, p)
	var want float64
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &want); err != nil {
		t.Fatalf("pycocoevalcap printed %q", out)
	}
	got, err := ScoreAll(ids, refs, hyps, jar)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("METEOR: captiongo %.9f, pycocoevalcap %.9f", *got.METEOR, want)
	if math.Abs(*got.METEOR-want) > 1e-6 {
		t.Errorf("METEOR %.9f, pycocoevalcap %.9f", *got.METEOR, want)
	}
}
