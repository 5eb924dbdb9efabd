package data

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// fixture captions: three images, commas and quotes included.
var fixture = map[string][]string{
	"a.jpg": {"A dog runs , fast .", `A "happy" dog .`, "Dog on grass"},
	"b.jpg": {"Two cats sleep .", "Cats, sleeping"},
	"c.jpg": {"A red car ."},
}

func fixtureImages() []string {
	var ims []string
	for k := range fixture {
		ims = append(ims, k)
	}
	sort.Strings(ims)
	return ims
}

func touchImages(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, im := range fixtureImages() {
		writePNG(t, testPicture(8, 8, 1), filepath.Join(dir, im))
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func captionsByImage(d *Dataset) map[string][]string {
	out := map[string][]string{}
	for _, e := range d.Examples {
		key := filepath.Base(e.Path)
		out[key] = append(out[key], e.Captions...)
	}
	return out
}

// TestFourLayoutsLoadTheSameCaptions writes the same captions in each layout.
func TestFourLayoutsLoadTheSameCaptions(t *testing.T) {
	root := t.TempDir()
	ims := fixtureImages()

	// Kaggle.
	kaggle := filepath.Join(root, "kaggle")
	var sb strings.Builder
	sb.WriteString("image,caption\n")
	for _, im := range ims {
		for _, c := range fixture[im] {
			fmt.Fprintf(&sb, "%s,%s\n", im, csvQuote(c))
		}
	}
	write(t, filepath.Join(kaggle, "captions.txt"), sb.String())
	touchImages(t, filepath.Join(kaggle, "Images"))

	// Original Flickr8k (one line with a space instead of the tab).
	orig := filepath.Join(root, "flickr8k")
	sb.Reset()
	for _, im := range ims {
		for i, c := range fixture[im] {
			sep := "\t"
			if im == "b.jpg" && i == 1 {
				sep = " "
			}
			fmt.Fprintf(&sb, "%s#%d%s%s\n", im, i, sep, c)
		}
	}
	write(t, filepath.Join(orig, "Flickr8k.token.txt"), sb.String())
	write(t, filepath.Join(orig, "Flickr_8k.trainImages.txt"), "a.jpg\n")
	write(t, filepath.Join(orig, "Flickr_8k.devImages.txt"), "b.jpg\n")
	write(t, filepath.Join(orig, "Flickr_8k.testImages.txt"), "c.jpg\n")
	touchImages(t, filepath.Join(orig, "Flicker8k_Dataset"))

	// Karpathy.
	karp := filepath.Join(root, "karpathy")
	type sent struct {
		Raw    string   `json:"raw"`
		Tokens []string `json:"tokens"`
	}
	type kim struct {
		Filename  string `json:"filename"`
		Split     string `json:"split"`
		Sentences []sent `json:"sentences"`
	}
	var kims []kim
	splits := map[string]string{"a.jpg": "restval", "b.jpg": "val", "c.jpg": "test"}
	for _, im := range ims {
		k := kim{Filename: im, Split: splits[im]}
		for _, c := range fixture[im] {
			k.Sentences = append(k.Sentences, sent{Raw: c, Tokens: Tokenize(c)})
		}
		kims = append(kims, k)
	}
	kb, _ := json.Marshal(map[string]any{"images": kims, "dataset": "flickr8k"})
	write(t, filepath.Join(karp, "dataset_flickr8k.json"), string(kb))
	touchImages(t, filepath.Join(karp, "Images"))

	// COCO.
	coco := filepath.Join(root, "coco")
	type cim struct {
		ID       int    `json:"id"`
		FileName string `json:"file_name"`
	}
	type ann struct {
		ID      int    `json:"id"`
		ImageID int    `json:"image_id"`
		Caption string `json:"caption"`
	}
	var cims []cim
	var anns []ann
	for i, im := range ims {
		cims = append(cims, cim{ID: 100 + i, FileName: im})
		for _, c := range fixture[im] {
			anns = append(anns, ann{ID: len(anns), ImageID: 100 + i, Caption: c})
		}
	}
	cb, _ := json.Marshal(map[string]any{"images": cims, "annotations": anns})
	write(t, filepath.Join(coco, "annotations", "captions_train2017.json"), string(cb))
	touchImages(t, filepath.Join(coco, "train2017"))

	for _, c := range []struct {
		dir    string
		format Format
	}{{kaggle, "kaggle"}, {orig, "flickr8k"}, {karp, "karpathy"}, {coco, "coco"}} {
		f, err := Detect(c.dir)
		if err != nil || f != c.format {
			t.Errorf("Detect(%s) = %q, %v; want %q", c.dir, f, err, c.format)
		}
		d, err := Load(c.dir, Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if got := captionsByImage(d); !reflect.DeepEqual(got, fixture) {
			t.Errorf("%s: captions\n got %v\nwant %v", c.format, got, fixture)
		}
		for _, e := range d.Examples {
			if e.Split != Train && e.Split != Val && e.Split != Test {
				t.Errorf("%s: %s has split %q", c.format, e.ImageID, e.Split)
			}
		}
	}
	// The formats with their own split keep it (restval counts as train).
	for _, dir := range []string{orig, karp} {
		d, _ := Load(dir, Options{})
		got := map[string]string{}
		for _, e := range d.Examples {
			got[filepath.Base(e.Path)] = e.Split
		}
		want := map[string]string{"a.jpg": Train, "b.jpg": Val, "c.jpg": Test}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: splits %v, want %v", dir, got, want)
		}
	}
}

func csvQuote(s string) string {
	if strings.ContainsAny(s, ",\"") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// TestRealKaggleCaptions loads the full Kaggle captions.txt as it is.
func TestRealKaggleCaptions(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-text")
	d, err := Load(dir, Options{Format: "kaggle", CaptionsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.NumCaptions(); got != 40455 {
		t.Errorf("%d captions, want 40,455", got)
	}
	if got := len(d.Examples); got != 8091 {
		t.Errorf("%d images, want 8,091", got)
	}
	quoted := 0
	for _, e := range d.Examples {
		for _, c := range e.Captions {
			if strings.Contains(c, ",") {
				quoted++
			}
		}
	}
	if quoted < 2447 {
		t.Errorf("%d captions hold a comma, want at least the 2,447 quoted ones", quoted)
	}
	counts := map[string]int{}
	for _, e := range d.Examples {
		counts[e.Split]++
	}
	// The Kaggle release has no split: 80/10/10 by image from seed 1.
	if counts[Train] != 6473 || counts[Val] != 809 || counts[Test] != 809 {
		t.Errorf("split by image = %v, want train 6473, val 809, test 809", counts)
	}
	v := BuildVocab(d.TrainCaptions(), 5)
	t.Logf(
		"Kaggle Flickr8k: %d images, %d captions; vocabulary at freq_threshold 5 on the train split: %d",
		len(d.Examples),
		d.NumCaptions(),
		v.Len(),
	)
	if v.Len() != wantKaggleVocab {
		t.Errorf("vocabulary size %d, want %d", v.Len(), wantKaggleVocab)
	}
}

// TestRealFlickrTokenFile loads the original release's token file with its lists.
func TestRealFlickrTokenFile(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-text")
	d, err := Load(dir, Options{Format: "flickr8k", CaptionsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	caps := map[string]int{}
	for _, e := range d.Examples {
		counts[e.Split]++
		caps[e.Split] += len(e.Captions)
	}
	if got := d.NumCaptions(); got != 40460 {
		t.Errorf("%d captions, want all 40,460 lines", got)
	}
	if counts[Train] != 6000 || counts[Test] != 1000 {
		t.Errorf("train %d, test %d images; want the lists' 6,000 and 1,000", counts[Train], counts[Test])
	}
	// No dev list here: the 1,092 images in neither list (among them the
	// release's "2258277193_586949ec62.jpg.1", which names no real image) are val.
	if counts[Val] != 1092 {
		t.Errorf("val %d images, want 1,092", counts[Val])
	}
	if len(d.Notes) == 0 || !strings.Contains(strings.Join(d.Notes, "\n"), "devImages.txt is absent") {
		t.Errorf("no note about the missing dev list: %v", d.Notes)
	}
	v := BuildVocab(d.TrainCaptions(), 5)
	t.Logf(
		"original Flickr8k: train %d / val %d / test %d images; vocabulary at freq_threshold 5 on train: %d",
		counts[Train],
		counts[Val],
		counts[Test],
		v.Len(),
	)
	if v.Len() != wantTokenVocab {
		t.Errorf("vocabulary size %d, want %d", v.Len(), wantTokenVocab)
	}
	// The vocabulary as pycocoevalcap's own PTB tokenizer (Java) makes it from
	// the same files, independently of captiongo's reader and tokenizer: the
	// train list's captions, words counted 5 times or more, most frequent
	// first, ties by spelling, after the four specials.
	out := testutil.RunPython(t, `import sys, json, collections
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
d = sys.argv[1]
train = set(open(d + "/Flickr_8k.trainImages.txt").read().split())
caps = []
for line in open(d + "/Flickr8k.token.txt", encoding="utf-8"):
    line = line.rstrip("\n")
    if not line.strip():
        continue
    key, _, cap = line.partition("\t") if "\t" in line else line.partition(" ")
    if key.rsplit("#", 1)[0] in train and cap.strip():
        caps.append(cap)
toks = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(caps)})
n = collections.Counter(w for i in range(len(caps)) for w in toks[i][0].split())
words = sorted((w for w in n if n[w] >= 5), key=lambda w: (-n[w], w))
print(json.dumps(["<PAD>", "<SOS>", "<EOS>", "<UNK>"] + words))
`, dir)
	var ref []string
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n[")+1:]), &ref); err != nil {
		t.Fatalf("reference vocabulary: %v", err)
	}
	if !reflect.DeepEqual(v.Itos, ref) {
		diff := 0
		for i := range min(len(ref), len(v.Itos)) {
			if ref[i] != v.Itos[i] {
				diff = i
				break
			}
		}
		t.Errorf(
			"vocabulary of %d words, pycocoevalcap's tokenizer gives %d; first difference at %d",
			v.Len(),
			len(ref),
			diff,
		)
	}
}

// TestRealFlickrMini loads the 1,000 real JPEGs with their captions.
func TestRealFlickrMini(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-mini")
	d, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Examples) != 1000 || d.NumCaptions() != 5000 {
		t.Errorf("%d images / %d captions, want 1,000 / 5,000", len(d.Examples), d.NumCaptions())
	}
	if len(d.Notes) != 0 {
		t.Errorf("unexpected notes: %v", d.Notes)
	}
	v := BuildVocab(d.TrainCaptions(), 5)
	tf := Transform{Size: 96, Crop: 75, Random: true, Mean: HalfMeanStd[0], Std: HalfMeanStd[1]}
	l, err := NewLoader(
		d.Examples,
		CaptionItems(d.Examples),
		v,
		tf,
		LoaderConfig{BatchSize: 64, Workers: 2, Shuffle: true, Seed: 1},
	)
	if err != nil {
		t.Fatal(err)
	}
	n, shapes := 0, map[[2]int]bool{}
	for _, e := range d.Examples[:300] {
		m, err := DecodeImage(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		shapes[[2]int{m.W, m.H}] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for b := range l.Epoch(ctx, 0, 0) {
		n += b.Size()
		if len(b.Images) != b.Size()*3*75*75 {
			t.Fatalf("batch %d: %d floats for %d images", b.Index, len(b.Images), b.Size())
		}
		if b.Index == 3 {
			break
		}
	}
	if n != 4*64 || len(shapes) < 20 {
		t.Errorf("read %d samples over %d image shapes", n, len(shapes))
	}
	if s := l.SkipSummary(); s != "" {
		t.Errorf("real JPEGs skipped: %s", s)
	}
}

// Vocabulary sizes at freq_threshold 5 on the training split, measured once
// and pinned so that a tokenizer or split change shows up.
const (
	wantKaggleVocab = 2662
	wantTokenVocab  = 2543
)

func TestVocabularyRoundTrip(t *testing.T) {
	caps := []string{"a dog runs", "a dog sits", "a cat runs", "a dog", "zebra"}
	v := BuildVocab(caps, 2)
	want := []string{"<PAD>", "<SOS>", "<EOS>", "<UNK>", "a", "dog", "runs"}
	if !reflect.DeepEqual(v.Itos, want) {
		t.Errorf("itos = %v, want %v (count order, ties by word)", v.Itos, want)
	}
	if got := v.Encode("A dog flies!"); !reflect.DeepEqual(got, []int{SOS, 4, 5, UNK, EOS}) {
		t.Errorf("Encode = %v", got)
	}
	if got := strings.Join(v.Decode([]int{SOS, 4, 5, EOS, 6}), " "); got != "a dog" {
		t.Errorf("Decode = %q", got)
	}
	p := filepath.Join(t.TempDir(), "vocab.json")
	if err := v.Save(p); err != nil {
		t.Fatal(err)
	}
	w, err := LoadVocab(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w.Itos, v.Itos) || w.FreqThreshold != 2 || w.ID("runs") != 6 {
		t.Errorf("loaded %v (threshold %d), want %v", w.Itos, w.FreqThreshold, v.Itos)
	}
	write(t, p, `{"itos": ["<SOS>", "<PAD>", "<EOS>", "<UNK>"]}`)
	if _, err := LoadVocab(p); err == nil || !strings.Contains(err.Error(), "itos[0]") {
		t.Errorf("swapped specials: %v", err)
	}
}

// TestVocabularyUsesTrainSplitOnly checks that test-only words stay out.
func TestVocabularyUsesTrainSplitOnly(t *testing.T) {
	d := &Dataset{Examples: []Example{
		{ImageID: "1", Captions: []string{"a dog", "a dog"}, Split: Train},
		{ImageID: "2", Captions: []string{"a unicorn", "a unicorn"}, Split: Test},
	}}
	v := BuildVocab(d.TrainCaptions(), 1)
	if v.ID("unicorn") != UNK || v.ID("dog") == UNK {
		t.Errorf("vocabulary %v leaks test words or misses train words", v.Itos)
	}
}

func TestBadInput(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		name, file, content, want string
	}{
		{"no header", "captions.txt", "a.jpg,A dog .\n", "captions.txt:1: header is"},
		{"bad quote", "captions.txt", "image,caption\na.jpg,\"A dog\n", "malformed CSV"},
		{"three fields", "captions.txt", "image,caption\na.jpg,A dog,runs\n", "captions.txt:2: 3 fields"},
		{
			"empty caption",
			"captions.txt",
			"image,caption\na.jpg,A dog\nb.jpg,  \n",
			"captions.txt:3: empty caption for b.jpg",
		},
		{"bad utf8", "captions.txt", "image,caption\na.jpg,A d\xffg\n", "captions.txt:2: not valid UTF-8"},
		{"token no hash", "Flickr8k.token.txt", "a.jpg#0\tA dog\nb.jpg\tA cat\n", "Flickr8k.token.txt:2: want"},
		{"token bad number", "Flickr8k.token.txt", "a.jpg#x\tA dog\n", "Flickr8k.token.txt:1: caption number"},
		{"karpathy bad json", "dataset_flickr8k.json", "{\"images\": [\n{,}]}", "dataset_flickr8k.json:2: bad JSON"},
		{
			"karpathy bad split",
			"dataset_flickr8k.json",
			`{"images": [{"filename": "a.jpg", "split": "dev", "sentences": [{"raw": "x"}]}]}`,
			"images[0] (a.jpg): split \"dev\"",
		},
		{
			"coco unknown image",
			"annotations/captions_train2017.json",
			`{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}`,
			"annotations[0]: image_id 2 is not in \"images\"",
		},
	}
	for i, c := range cases {
		dir := filepath.Join(root, fmt.Sprint(i))
		write(t, filepath.Join(dir, c.file), c.content)
		_, err := Load(dir, Options{CaptionsOnly: true})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := Load(filepath.Join(root, "nope"), Options{}); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing folder: %v", err)
	}
	empty := filepath.Join(root, "empty")
	os.MkdirAll(empty, 0o755)
	if _, err := Load(empty, Options{}); err == nil || !strings.Contains(err.Error(), "no captions.txt") {
		t.Errorf("folder without captions: %v", err)
	}
	// Listed images that are absent are skipped and counted in one note.
	dir := filepath.Join(root, "missing")
	write(t, filepath.Join(dir, "captions.txt"), "image,caption\na.jpg,A dog .\nb.jpg,A cat .\nzz.jpg,A ghost .\n")
	touchImages(t, filepath.Join(dir, "Images"))
	d, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Examples) != 2 || len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "1 image(s) listed in") ||
		!strings.Contains(d.Notes[0], "zz.jpg") {
		t.Errorf("examples %d, notes %v", len(d.Examples), d.Notes)
	}
	// An image folder that does not exist is an error, not 3 silent skips.
	write(t, filepath.Join(root, "noimages", "captions.txt"), "image,caption\na.jpg,A dog .\n")
	if _, err := Load(filepath.Join(root, "noimages"), Options{}); err == nil ||
		!strings.Contains(err.Error(), "image folder") {
		t.Errorf("absent image folder: %v", err)
	}
}

// TestSplitListsOnFlickr8k224: the standard split lists assign all of
// Flickr8k in the Kaggle layout: the lists' own line counts (6,000 train, 1,001
// test names of which one is in no image set), the rest val; the stray name
// is noted; a folder without the lists is an error naming the missing file.
func TestSplitListsOnFlickr8k224(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-224")
	lists := testutil.SharedData(t, "flickr8k-text")
	lines := func(name string) []string {
		b, err := os.ReadFile(filepath.Join(lists, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b))
	}
	trainNames, testNames := lines("Flickr_8k.trainImages.txt"), lines("Flickr_8k.testImages.txt")
	d, err := Load(dir, Options{SplitLists: lists})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range d.Examples {
		counts[e.Split]++
	}
	all := len(d.Examples)
	if counts[Train] != len(trainNames) || counts[Test] != len(testNames)-1 ||
		counts[Val] != all-len(trainNames)-(len(testNames)-1) {
		t.Errorf(
			"splits %v of %d images; the lists name %d train and %d test (one of them absent)",
			counts,
			all,
			len(trainNames),
			len(testNames),
		)
	}
	if all != 8091 || counts[Train] != 6000 || counts[Test] != 1000 {
		t.Errorf("splits %v of %d images, want the standard 6,000 / 1,091 / 1,000", counts, all)
	}
	joined := strings.Join(d.Notes, "\n")
	if !strings.Contains(joined, "9000268201_993b08cb0e.jpg") || !strings.Contains(joined, "Flickr_8k.testImages.txt") {
		t.Errorf("notes do not name the stray test-list entry: %q", d.Notes)
	}
	empty := t.TempDir()
	_, err = Load(dir, Options{SplitLists: empty})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(empty, "Flickr_8k.trainImages.txt")) ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("split lists folder without lists: %v, want an error naming Flickr_8k.trainImages.txt", err)
	}
	if _, err := Load(dir, Options{SplitLists: filepath.Join(empty, "nope")}); err == nil ||
		!strings.Contains(err.Error(), "not a folder") {
		t.Errorf("missing split lists folder: %v", err)
	}
}
