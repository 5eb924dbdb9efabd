package data

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzKaggleCaptions: the CSV parser never panics, and what it accepts is
// valid: non-empty UTF-8 image names and captions.
func FuzzKaggleCaptions(f *testing.F) {
	f.Add([]byte("image,caption\na.jpg,A dog .\n"))
	f.Add([]byte("image,caption\na.jpg,\"A dog , a \"\"ball\"\" .\"\n"))
	f.Add([]byte("\ufeffimage,caption\r\nb.jpg,x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := ParseKaggleCaptions(bytes.NewReader(b), "captions.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "captions.txt") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, l := range lines {
			if strings.TrimSpace(l.caption) == "" || strings.TrimSpace(l.image) == "" || l.line < 2 {
				t.Fatalf("accepted %+v", l)
			}
		}
	})
}

// FuzzFlickrTokens: the token-file parser never panics and names the file.
func FuzzFlickrTokens(f *testing.F) {
	f.Add([]byte("1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n"))
	f.Add([]byte("a.jpg#1 space separated caption\n\n"))
	f.Add([]byte("a.jpg.1#0\tx\n#\t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := ParseFlickrTokens(bytes.NewReader(b), "Flickr8k.token.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "Flickr8k.token.txt") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, l := range lines {
			if strings.TrimSpace(l.caption) == "" || l.image == "" {
				t.Fatalf("accepted %+v", l)
			}
		}
	})
}

// FuzzTokenize: tokens are never empty and never hold spaces.
func FuzzTokenize(f *testing.F) {
	for _, s := range tricky {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range PTBTokens(s) {
			if tok == "" || strings.ContainsAny(tok, " \t\n") {
				t.Fatalf("PTBTokens(%q) gave token %q", s, tok)
			}
		}
	})
}
