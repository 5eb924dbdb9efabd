package data

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func smallSet(t *testing.T) (*Dataset, *Vocab) {
	t.Helper()
	dir := t.TempDir()
	if err := WriteSynth(dir, 12, 5); err != nil {
		t.Fatal(err)
	}
	// Corrupt one picture after the fact: it must be skipped and reported.
	if err := os.WriteFile(filepath.Join(dir, "Images", "shape_00004.png"), []byte("\x89PNG broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Load(dir, Options{Ratios: [3]float64{1, 0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	return d, BuildVocab(d.TrainCaptions(), 1)
}

func collect(t *testing.T, l *Loader, epoch, start int) []*Batch {
	t.Helper()
	var out []*Batch
	for b := range l.Epoch(context.Background(), epoch, start) {
		out = append(out, b)
	}
	return out
}

func TestLoaderDeterministicAcrossWorkers(t *testing.T) {
	d, v := smallSet(t)
	tf := Transform{Size: 80, Crop: 75, Random: true, Mean: HalfMeanStd[0], Std: HalfMeanStd[1]}
	mk := func(workers int) *Loader {
		l, err := NewLoader(
			d.Examples,
			CaptionItems(d.Examples),
			v,
			tf,
			LoaderConfig{BatchSize: 7, Workers: workers, Prefetch: 3, Shuffle: true, Seed: 9},
		)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := collect(t, mk(1), 0, 0), collect(t, mk(3), 0, 0)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d vs %d batches", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("batch %d differs between 1 and 3 workers", i)
		}
		if a[i].Index < 0 || (i > 0 && a[i].Index <= a[i-1].Index) {
			t.Fatalf("batches out of order: %d after %d", a[i].Index, a[i-1].Index)
		}
	}
	// 60 captions, 5 of them on the corrupt picture.
	n := 0
	for _, x := range a {
		n += x.Size()
	}
	if n != 55 {
		t.Errorf("%d samples, want 55 (60 minus the corrupt picture's 5)", n)
	}
	l := mk(2)
	collect(t, l, 0, 0)
	if s := l.SkipSummary(); !strings.Contains(s, "1 unreadable image(s)") || !strings.Contains(s, "shape_00004.png") {
		t.Errorf("SkipSummary = %q", s)
	}
	// Another epoch reshuffles; the same epoch repeats.
	c := collect(t, mk(2), 1, 0)
	if reflect.DeepEqual(a[0].Items, c[0].Items) {
		t.Error("epoch 1 has the same first batch as epoch 0")
	}
	// Resuming at batch 3 gives the same batches 3.. as a full epoch.
	r := collect(t, mk(2), 0, 3)
	full := collect(t, mk(2), 0, 0)
	var tail []*Batch
	for _, x := range full {
		if x.Index >= 3 {
			tail = append(tail, x)
		}
	}
	if !reflect.DeepEqual(r, tail) {
		t.Error("resuming at batch 3 does not repeat the epoch's batches 3..")
	}
}

func TestLoaderPadsToLongestCaption(t *testing.T) {
	d, v := smallSet(t)
	tf := Transform{Size: 75, Mean: HalfMeanStd[0], Std: HalfMeanStd[1]}
	l, err := NewLoader(d.Examples, CaptionItems(d.Examples), v, tf, LoaderConfig{BatchSize: 5, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range collect(t, l, 0, 0) {
		longest := 0
		for r, it := range b.Items {
			ids := v.Encode(d.Examples[it.Example].Captions[it.Caption])
			longest = max(longest, len(ids))
			if b.Lengths[r] != len(ids) {
				t.Fatalf("length %d, want %d", b.Lengths[r], len(ids))
			}
			for c := 0; c < b.T; c++ {
				want := int64(PAD)
				if c < len(ids) {
					want = int64(ids[c])
				}
				if b.Tokens[r*b.T+c] != want {
					t.Fatalf("batch %d row %d col %d: %d, want %d", b.Index, r, c, b.Tokens[r*b.T+c], want)
				}
			}
		}
		if b.T != longest {
			t.Errorf("batch %d padded to %d, longest caption is %d", b.Index, b.T, longest)
		}
	}
	if _, err := NewLoader(d.Examples, nil, v, tf, LoaderConfig{}); err == nil {
		t.Error("batch size 0 accepted")
	}
}

func TestLoaderCancel(t *testing.T) {
	d, v := smallSet(t)
	tf := Transform{Size: 75, Mean: HalfMeanStd[0], Std: HalfMeanStd[1]}
	l, _ := NewLoader(d.Examples, CaptionItems(d.Examples), v, tf, LoaderConfig{BatchSize: 2, Workers: 2})
	ctx, cancel := context.WithCancel(context.Background())
	ch := l.Epoch(ctx, 0, 0)
	<-ch
	cancel()
	for range ch { // must close, not hang
	}
}

// TestSynthCaptionsAreTrue checks that the generator's captions describe its
// pictures: every named colour covers the object's pixels, objects are named
// left to right, and five different wordings are given.
func TestSynthCaptionsAreTrue(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSynth(dir, 50, 2); err != nil {
		t.Fatal(err)
	}
	scenes, err := LoadScenes(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Examples) != 50 || d.NumCaptions() != 250 {
		t.Fatalf("%d images, %d captions", len(d.Examples), d.NumCaptions())
	}
	colorRGB := map[string][3]uint8{}
	for _, c := range synthColors {
		colorRGB[c.Name] = c.RGB
	}
	for i, sc := range scenes {
		img, err := DecodeImage(filepath.Join(dir, "Images", sc.File))
		if err != nil {
			t.Fatal(err)
		}
		uniq := map[string]bool{}
		for _, c := range sc.Captions {
			uniq[c] = true
			for _, o := range sc.Objects {
				if !strings.Contains(c, o.Color+" "+o.Shape) && len(sc.Objects) > 1 &&
					!strings.Contains(c, " to the left of ") {
					t.Errorf("scene %d: caption %q omits the %s %s", i, c, o.Color, o.Shape)
				}
			}
		}
		if len(uniq) != 5 {
			t.Errorf("scene %d: %d distinct captions, want 5", i, len(uniq))
		}
		for k, o := range sc.Objects {
			m := o.Mask(SynthSide)
			in, match := 0, 0
			for p, on := range m {
				if !on {
					continue
				}
				in++
				if c := img.At(p%SynthSide, p/SynthSide); [3]uint8{c.R, c.G, c.B} == colorRGB[o.Color] {
					match++
				}
			}
			if in < 50 || float64(match) < 0.9*float64(in) {
				t.Errorf(
					"scene %d object %d (%s %s): %d of %d mask pixels have its colour",
					i,
					k,
					o.Color,
					o.Shape,
					match,
					in,
				)
			}
			if k > 0 && o.CX <= sc.Objects[k-1].CX {
				t.Errorf("scene %d: objects not left to right", i)
			}
		}
	}
	// Writing again with the same n and seed is a no-op; the files are identical.
	before, _ := os.ReadFile(filepath.Join(dir, "captions.txt"))
	other := t.TempDir()
	if err := WriteSynth(other, 50, 2); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(other, "captions.txt"))
	if string(before) != string(after) {
		t.Error("the same seed wrote different captions")
	}
}
