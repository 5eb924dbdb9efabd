package data

import (
	"bufio"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// tricky are captions with the punctuation, clitics and abbreviations the PTB
// rules treat specially.
var tricky = []string{
	"A dog's ball. The dogs' toys!",
	"Isn't it cannot gonna wanna I'm we're they've you'll he'd",
	`"Hello," she said. 'quoted' (paren) [br] {cb}`,
	"Mr. Smith at 5:30 p.m. costs $5.50 or 50% & more...",
	"A man/woman in a t-shirt -- a dog - yes ; no : maybe?!",
	"Two kids , one dog .",
	"U.S.A. st. louis e.g. etc. vs. Dr.",
	"WHAT? a 1,000 dogs 3.14 #1 @home",
	"the cat 's mat 'tis O'Neil rock'n'roll",
	"a b.c. a.b 2nd. it. i.",
	"dog.cat dog..cat dog... cat x'",
	"A RED Circle, and a blue square!!",
	"   spaces   everywhere\tand tabs  ",
	"!?",
	"in washington d.c.",
	"The next line opens a sentence, so the line before gets a period: in the u.s.",
	"Large words do not open one: r.v.",
	"Two dogs",
}

// javaPTB runs pycocoevalcap's own Stanford PTBTokenizer jar over lines.
func javaPTB(t *testing.T, lines []string) []string {
	t.Helper()
	testutil.Java(t)
	jar := strings.TrimSpace(
		testutil.RunPython(
			t,
			"import os, pycocoevalcap.tokenizer.ptbtokenizer as t\n"+
				`print(os.path.join(os.path.dirname(t.__file__), "stanford-corenlp-3.4.1.jar"))`,
		),
	)
	in := filepath.Join(t.TempDir(), "lines.txt")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
		in).
		Output()
	if err != nil {
		t.Fatalf("java PTBTokenizer: %v", err)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(got) != len(lines) {
		t.Fatalf("PTBTokenizer returned %d lines for %d", len(got), len(lines))
	}
	return got
}

func comparePTB(t *testing.T, lines []string) {
	t.Helper()
	want := javaPTB(t, lines)
	bad := 0
	for i, l := range lines {
		next := ""
		if i+1 < len(lines) {
			next = lines[i+1]
		}
		got := strings.Join(ptbLine(l, next), " ")
		w := strings.Join(strings.Fields(want[i]), " ")
		if got != w {
			bad++
			if bad <= 20 {
				t.Errorf("line %d %q:\n got %q\nwant %q", i+1, l, got, w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines differ from the Java PTBTokenizer", bad, len(lines))
	}
}

func TestPTBTokensMatchJavaOnTrickyLines(t *testing.T) { comparePTB(t, tricky) }

// TestPTBTokensMatchJavaOnFlickr8k compares every caption of the Kaggle Flickr8k file.
func TestPTBTokensMatchJavaOnFlickr8k(t *testing.T) {
	path := testutil.SharedData(t, "flickr8k-text/captions.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, rec := range recs[1:] {
		lines = append(lines, strings.ReplaceAll(rec[1], "\n", " "))
	}
	comparePTB(t, lines)
}

func TestTokenizeDropsCOCOPunctuation(t *testing.T) {
	got := strings.Join(Tokenize(`A "Red" dog's (ball), isn't it?!`), " ")
	want := "a red dog 's -lrb- ball -rrb- is n't it ?!"
	if got != want {
		t.Errorf(
			"Tokenize = %q, want %q (COCO keeps -lrb- and ?! because its list is upper-case / lacks them)",
			got,
			want,
		)
	}
}
