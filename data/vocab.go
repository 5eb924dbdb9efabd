package data

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Special token ids, as in the baseline.
const (
	PAD = 0
	SOS = 1
	EOS = 2
	UNK = 3
)

var specials = []string{"<PAD>", "<SOS>", "<EOS>", "<UNK>"}

// Vocab maps words to ids: the four specials, then every training word whose
// count reaches the threshold, most frequent first (ties in byte order), so the
// same captions always give the same ids.
type Vocab struct {
	Itos          []string `json:"itos"`
	FreqThreshold int      `json:"freq_threshold"`
	stoi          map[string]int
}

// BuildVocab counts the tokens of the given captions (tokenised with Tokenize;
// pass only the training split) and keeps words seen at least threshold times.
func BuildVocab(captions []string, threshold int) *Vocab {
	if threshold < 1 {
		threshold = 1
	}
	counts := map[string]int{}
	for _, c := range captions {
		for _, t := range Tokenize(c) {
			counts[t]++
		}
	}
	var words []string
	for w, n := range counts {
		if n >= threshold {
			words = append(words, w)
		}
	}
	sort.Slice(words, func(i, j int) bool {
		if counts[words[i]] != counts[words[j]] {
			return counts[words[i]] > counts[words[j]]
		}
		return words[i] < words[j]
	})
	v := &Vocab{Itos: append(append([]string{}, specials...), words...), FreqThreshold: threshold}
	v.index()
	return v
}

// TrainCaptions returns all captions of the training split.
func (d *Dataset) TrainCaptions() []string {
	var out []string
	for _, e := range d.Examples {
		if e.Split == Train {
			out = append(out, e.Captions...)
		}
	}
	return out
}

func (v *Vocab) index() {
	v.stoi = make(map[string]int, len(v.Itos))
	for i, w := range v.Itos {
		v.stoi[w] = i
	}
}

// Len is the vocabulary size, specials included.
func (v *Vocab) Len() int { return len(v.Itos) }

// ID returns a word's id, or UNK.
func (v *Vocab) ID(word string) int {
	if i, ok := v.stoi[word]; ok {
		return i
	}
	return UNK
}

// Encode tokenises a caption and returns <SOS> ids... <EOS>.
func (v *Vocab) Encode(caption string) []int {
	toks := Tokenize(caption)
	ids := make([]int, 0, len(toks)+2)
	ids = append(ids, SOS)
	for _, t := range toks {
		ids = append(ids, v.ID(t))
	}
	return append(ids, EOS)
}

// Decode turns ids into words, skipping <SOS>/<PAD> and stopping at <EOS>.
func (v *Vocab) Decode(ids []int) []string {
	var out []string
	for _, id := range ids {
		if id == EOS {
			break
		}
		if id == SOS || id == PAD {
			continue
		}
		if id < 0 || id >= len(v.Itos) {
			out = append(out, "<UNK>")
			continue
		}
		out = append(out, v.Itos[id])
	}
	return out
}

// Save writes the vocabulary as JSON, atomically (temp file + rename).
func (v *Vocab) Save(path string) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// LoadVocab reads a vocabulary saved by Save and checks its specials.
func LoadVocab(path string) (*Vocab, error) {
	var v Vocab
	if err := ReadJSON(path, &v); err != nil {
		return nil, err
	}
	if len(v.Itos) < len(specials) {
		return nil, fmt.Errorf("%s: vocabulary has %d entries, fewer than the 4 specials", path, len(v.Itos))
	}
	for i, s := range specials {
		if v.Itos[i] != s {
			return nil, fmt.Errorf("%s: itos[%d] is %q, want %q", path, i, v.Itos[i], s)
		}
	}
	seen := map[string]bool{}
	for i, w := range v.Itos {
		if seen[w] {
			return nil, fmt.Errorf("%s: itos[%d] %q appears twice", path, i, w)
		}
		seen[w] = true
	}
	v.index()
	return &v, nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// folder, synced and renamed into place, so a crash leaves the old file or the
// new one, never a torn one.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
