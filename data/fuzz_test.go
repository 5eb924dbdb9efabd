package data

import (
	"bytes"
	"os"
	"path/filepath"
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

// fuzzFile writes b as name in a fresh folder and returns its path.
func fuzzFile(t *testing.T, name string, b []byte) string {
	dir := t.TempDir()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzLoadVocab: vocab.json never panics the reader; what it accepts starts
// with the four specials, has no word twice, and encodes and decodes.
func FuzzLoadVocab(f *testing.F) {
	v := BuildVocab([]string{"a dog runs", "a dog"}, 1)
	dir := f.TempDir()
	if err := v.Save(filepath.Join(dir, "vocab.json")); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "vocab.json"))
	f.Add(b)
	f.Add([]byte(`{"itos": ["<PAD>", "<SOS>", "<EOS>", "<UNK>", "a", "a"]}`))
	f.Add([]byte(`{"itos": ["<PAD>"]}`))
	f.Add([]byte(`{"itos": 3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := fuzzFile(t, "vocab.json", b)
		v, err := LoadVocab(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if v.Len() < 4 || v.Itos[0] != "<PAD>" || v.Itos[3] != "<UNK>" {
			t.Fatalf("accepted %v", v.Itos)
		}
		ids := v.Encode("a dog")
		_ = v.Decode(ids)
	})
}

// FuzzKarpathyAndCOCO: a Karpathy dataset_*.json or a COCO captions file never
// panics the readers; errors name the file, and an accepted data set has a
// caption for every example.
func FuzzKarpathyAndCOCO(f *testing.F) {
	f.Add(true, []byte(`{"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A dog ."}]}]}`))
	f.Add(true, []byte(`{"images": [{"filename": "a.jpg", "split": "dev", "sentences": [{"raw": "x"}]}]}`))
	f.Add(true, []byte(`{"images": [{"filename": "", "sentences": null}]}`))
	f.Add(
		false,
		[]byte(`{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "A dog ."}]}`),
	)
	f.Add(
		false,
		[]byte(`{"images": [{"id": 1, "file_name": "../a.jpg"}], "annotations": [{"image_id": 2, "caption": ""}]}`),
	)
	f.Fuzz(func(t *testing.T, karpathy bool, b []byte) {
		dir := t.TempDir()
		name := filepath.Join(dir, "dataset_flickr8k.json")
		if !karpathy {
			name = filepath.Join(dir, "annotations", "captions_val2017.json")
			os.MkdirAll(filepath.Dir(name), 0o755)
			os.MkdirAll(filepath.Join(dir, "val2017"), 0o755)
		} else {
			os.MkdirAll(filepath.Join(dir, "Images"), 0o755)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, img := range []string{"Images/a.jpg", "val2017/a.jpg"} {
			os.WriteFile(filepath.Join(dir, img), []byte("x"), 0o644)
		}
		ds, err := Load(dir, Options{})
		if err != nil {
			if !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), filepath.Base(name)) {
				t.Fatalf("error names neither the folder nor the file: %v", err)
			}
			return
		}
		for _, e := range ds.Examples {
			if len(e.Captions) == 0 {
				t.Fatalf("accepted an example without captions: %+v", e)
			}
		}
	})
}
