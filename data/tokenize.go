package data

import (
	"strings"
	"unicode"
)

// Punctuation is the list of tokens the COCO caption evaluation (pycocoevalcap's
// PTBTokenizer wrapper) drops after tokenising. Note that it lists "-LRB-" and
// friends in upper case while the tokenizer runs with -lowerCase, so "-lrb-"
// survives there; Tokenize keeps that quirk so that scores match.
var Punctuation = map[string]bool{
	"''": true, "'": true, "``": true, "`": true, "-LRB-": true, "-RRB-": true, "-LCB-": true, "-RCB-": true,
	".": true, "?": true, "!": true, ",": true, ":": true, "-": true, "--": true, "...": true, ";": true,
}

// Tokenize lower-cases a caption and splits it as the COCO caption evaluation
// does (Stanford PTBTokenizer 3.4.1 with -preserveLines -lowerCase, then the
// punctuation tokens in Punctuation removed). It re-implements the part of the
// PTB rules that captions use (quotes, brackets, clitics such as 's and n't,
// abbreviations, trailing punctuation), checked token for token against the
// Java tokenizer on all 40,455 Flickr8k captions in the tests.
func Tokenize(s string) []string {
	var out []string
	for _, t := range PTBTokens(s) {
		if !Punctuation[t] {
			out = append(out, t)
		}
	}
	return out
}

// PTBTokens returns the lower-cased PTB tokens of one line, punctuation included.
func PTBTokens(s string) []string { return ptbLine(s, "") }

// TokenizeLines tokenises captions the way pycocoevalcap does when it sends
// them to the Java tokenizer as one file, one caption a line: a line that ends
// in a dotted acronym ("d.c.") gets a sentence-final "." when the next line
// starts with a likely sentence opener. Scores that must equal pycocoevalcap's
// tokenise a batch in the same order with TokenizeLines.
func TokenizeLines(lines []string) [][]string {
	out := make([][]string, len(lines))
	for i, l := range lines {
		next := ""
		if i+1 < len(lines) {
			next = lines[i+1]
		}
		for _, t := range ptbLine(l, next) {
			if !Punctuation[t] {
				out[i] = append(out[i], t)
			}
		}
	}
	return out
}

// sentenceOpeners are the capitalised words after which PTBTokenizer 3.4.1
// treats a line-final acronym's period as also ending the sentence (measured
// with the jar on every capitalised word of the Flickr8k captions).
var sentenceOpeners = map[string]bool{}

func init() {
	for _, w := range strings.Fields("A About After An As At But He Her Here However If In It Many Now Once One Other " +
		"Our Since So Some Such That The Their Then There These They This We What When While Yet You") {
		sentenceOpeners[w] = true
	}
}

func ptbLine(s, next string) []string {
	opens := false
	if f := strings.FieldsFunc(next, unicode.IsSpace); len(f) > 0 {
		opens = sentenceOpeners[f[0]]
	}
	s = strings.ToLower(s)
	var out []string
	chunks := strings.FieldsFunc(s, unicode.IsSpace)
	for i, chunk := range chunks {
		out = appendChunk(out, chunk, opens && i == len(chunks)-1)
	}
	return out
}

var clitics = []string{"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}

// splitWords are single words the PTB lexer cuts in two.
var splitWords = map[string][2]string{
	"cannot": {"can", "not"}, "gonna": {"gon", "na"}, "wanna": {"wan", "na"}, "gotta": {"got", "ta"},
	"lemme": {"lem", "me"}, "gimme": {"gim", "me"}, "'tis": {"'t", "is"}, "'twas": {"'t", "was"},
}

// abbreviations keep their final period (checked against PTBTokenizer 3.4.1).
var abbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "st": true, "vs": true, "etc": true, "jr": true,
	"sr": true, "prof": true, "mt": true, "ft": true, "inc": true, "ltd": true, "co": true, "corp": true,
	"ave": true, "no": true, "jan": true, "feb": true, "mar": true, "apr": true, "aug": true, "sep": true,
	"sept": true, "oct": true, "nov": true, "dec": true, "gen": true, "gov": true, "sen": true, "rep": true,
	"rev": true, "lt": true, "col": true, "sgt": true, "capt": true, "messrs": true, "bros": true,
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' }

// keepsPeriod reports whether word (which ends in '.') is an abbreviation whose
// period stays attached: a single letter ("i."), dotted letters ("u.s.a.",
// "p.m.", "e.g."), or a listed abbreviation ("mr.", "st.").
func keepsPeriod(word string) bool {
	core := strings.TrimSuffix(word, ".")
	if core == "" {
		return false
	}
	if len(core) == 1 && isLetter(core[0]) {
		return true
	}
	if abbreviations[core] {
		return true
	}
	// letter(.letter)+ followed by the final period: u.s.a. p.m. e.g. b.c.
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if len(p) != 1 || !isLetter(p[0]) {
			return false
		}
	}
	return true
}

// dottedAcronym reports whether word is letters separated by periods, ending in
// one ("u.s.", "d.c."): at the end of a line PTB adds a sentence-final ".".
func dottedAcronym(word string) bool {
	core := strings.TrimSuffix(word, ".")
	parts := strings.Split(core, ".")
	if len(parts) < 2 || core == word {
		return false
	}
	for _, p := range parts {
		if len(p) != 1 || !isLetter(p[0]) {
			return false
		}
	}
	return true
}

// appendChunk appends the tokens of one whitespace-free chunk; sentEnd marks
// the last chunk of a line followed by a sentence opener.
func appendChunk(out []string, w string, sentEnd bool) []string {
	// Leading punctuation.
	for len(w) > 0 {
		switch {
		case w[0] == '"':
			// A quote that starts a word opens (``); a lone quote between
			// spaces is taken as closing ('') by the PTB lexer.
			if len(w) == 1 {
				out = append(out, "''")
			} else {
				out = append(out, "``")
			}
			w = w[1:]
			continue
		case w[0] == '(':
			out, w = append(out, "-lrb-"), w[1:]
			continue
		case w[0] == '[':
			out, w = append(out, "-lsb-"), w[1:]
			continue
		case w[0] == '{':
			out, w = append(out, "-lcb-"), w[1:]
			continue
		case w[0] == '`':
			out, w = append(out, "`"), w[1:]
			continue
		case w[0] == '$' && len(w) > 1:
			out, w = append(out, "$"), w[1:]
			continue
		case w[0] == '#' && len(w) > 1:
			out, w = append(out, "#"), w[1:]
			continue
		case w[0] == '-' && len(w) > 1 && isLetter(w[1]):
			out, w = append(out, "-"), w[1:]
			continue
		case w[0] == '\'' && cliticPrefix(w) != "":
			c := cliticPrefix(w)
			out, w = append(out, c), w[len(c):]
			continue
		case w[0] == '\'' && len(w) > 1 && !isClitic(w) && !isSplitWord(w):
			out, w = append(out, "`"), w[1:]
			continue
		}
		break
	}
	if w == "" {
		return out
	}
	// Trailing punctuation, collected from the end.
	var tail []string
	for len(w) > 0 {
		n := len(w)
		switch c := w[n-1]; {
		case c == '"':
			tail, w = append(tail, "''"), w[:n-1]
			continue
		case c == ')':
			tail, w = append(tail, "-rrb-"), w[:n-1]
			continue
		case c == ']':
			tail, w = append(tail, "-rsb-"), w[:n-1]
			continue
		case c == '}':
			tail, w = append(tail, "-rcb-"), w[:n-1]
			continue
		case c == ',' || c == ';' || c == ':':
			if n == 1 {
				break
			}
			tail, w = append(tail, string(c)), w[:n-1]
			continue
		case c == '%' && n > 1:
			tail, w = append(tail, "%"), w[:n-1]
			continue
		case c == '?' || c == '!':
			i := n
			for i > 0 && (w[i-1] == '?' || w[i-1] == '!') {
				i--
			}
			if i == 0 {
				break
			}
			tail, w = append(tail, w[i:]), w[:i]
			continue
		case c == '.':
			if strings.HasSuffix(w, "...") && n > 3 {
				tail, w = append(tail, "..."), w[:n-3]
				continue
			}
			if n == 1 || w == "..." {
				break
			}
			if keepsPeriod(w) {
				if sentEnd && len(tail) == 0 && dottedAcronym(w) {
					tail = append(tail, ".")
				}
				break
			}
			tail, w = append(tail, "."), w[:n-1]
			continue
		case c == '\'' && n > 1 && !isClitic(w) && w[n-2] != 'n':
			tail, w = append(tail, "'"), w[:n-1]
			continue
		case c == '\'' && n > 1 && !isClitic(w) && !strings.HasSuffix(w, "'n'"):
			tail, w = append(tail, "'"), w[:n-1]
			continue
		}
		break
	}
	if w != "" {
		out = appendWord(out, w)
	}
	for i := len(tail) - 1; i >= 0; i-- {
		out = append(out, tail[i])
	}
	return out
}

func isClitic(w string) bool {
	for _, c := range clitics {
		if w == c {
			return true
		}
	}
	return w == "'n'"
}

// cliticPrefix returns the clitic a chunk starts with when a non-letter follows
// it ("'s-eye-view" -> "'s"), else "".
func cliticPrefix(w string) string {
	for _, c := range clitics[1:] {
		if strings.HasPrefix(w, c) && len(w) > len(c) && !isLetter(w[len(c)]) && w[len(c)] != '\'' {
			return c
		}
	}
	return ""
}

func isSplitWord(w string) bool { _, ok := splitWords[w]; return ok }

// appendWord splits the clitics and fixed words off a chunk without edge punctuation.
func appendWord(out []string, w string) []string {
	if p, ok := splitWords[w]; ok {
		return append(out, p[0], p[1])
	}
	if i := strings.Index(w, "'n'"); i > 0 && i+3 < len(w) {
		return append(appendWord(out, w[:i]), "'n'", w[i+3:])
	}
	if w == "..." || isClitic(w) {
		return append(out, w)
	}
	for _, c := range clitics {
		if strings.HasSuffix(w, c) && len(w) > len(c) {
			stem := w[:len(w)-len(c)]
			if c != "n't" && !isLetter(stem[len(stem)-1]) {
				continue
			}
			return append(append(out, stem), c)
		}
	}
	// "at&t", "a=b": PTB cuts these symbols out of a word.
	if i := strings.IndexAny(w, "&="); i > 0 && i < len(w)-1 {
		return appendWord(append(appendWord(out, w[:i]), w[i:i+1]), w[i+1:])
	}
	// "dog..cat": PTB cuts at a run of two or more periods.
	if i := strings.Index(w, ".."); i > 0 {
		j := i
		for j < len(w) && w[j] == '.' {
			j++
		}
		if j < len(w) && j-i == 2 {
			return appendWord(append(append(out, w[:i]), ".", "."), w[j:])
		}
	}
	return append(out, w)
}
