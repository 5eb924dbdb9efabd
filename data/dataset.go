// Package data reads captioning data sets (Flickr8k as on Kaggle, the original
// Flickr8k release, Karpathy split JSON, COCO captions JSON and captiongo's own
// synthetic shapes), builds the vocabulary, and turns images into normalised
// float32 batches on worker goroutines. It never touches tensors: batches are
// plain Go slices, handed to the one goroutine that owns the model.
package data

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Split names.
const (
	Train = "train"
	Val   = "val"
	Test  = "test"
)

// Example is one image with its reference captions.
type Example struct {
	ImageID  string   // the image's file name (Flickr) or id (COCO)
	Path     string   // path of the image file
	Captions []string // raw captions, as written in the data set
	Split    string   // Train, Val or Test
}

// Dataset is a loaded data set: its examples and what was skipped, in words.
type Dataset struct {
	Format   Format    // kaggle, flickr8k, karpathy or coco
	Source   string    // the file or folder it was read from
	Examples []Example // in the order of the source file
	Notes    []string  // one summary line per kind of skipped or re-assigned entry
}

// Options controls Load.
type Options struct {
	// Format is FormatAuto (detect from the folder) or one of the formats.
	Format Format
	// ImageDir overrides where images are looked up (default: the format's own).
	ImageDir string
	// Seed and Ratios (train, val, test) split data sets that have no split of
	// their own, by image, deterministically.
	Seed   uint64
	Ratios [3]float64
	// CaptionsOnly skips the check that listed images exist (for text-only use).
	CaptionsOnly bool
	// SplitLists names a folder with the standard Flickr8k split lists
	// (Flickr_8k.trainImages.txt, Flickr_8k.testImages.txt and, if present,
	// Flickr_8k.devImages.txt) that assign the splits of a Kaggle or original
	// Flickr8k folder; without a dev list the images in neither list are val.
	SplitLists string
}

// Format names a caption data set layout.
type Format string

// The layouts (see Load).
const (
	FormatAuto     Format = "auto"
	FormatKaggle   Format = "kaggle"   // Images/ + captions.txt
	FormatFlickr8k Format = "flickr8k" // Flickr8k.token.txt + split lists + Flicker8k_Dataset/
	FormatKarpathy Format = "karpathy" // dataset_flickr8k.json / dataset_coco.json
	FormatCOCO     Format = "coco"     // annotations/captions_{train,val}2017.json
)

// Formats lists the accepted values, FormatAuto first.
var Formats = []Format{FormatAuto, FormatKaggle, FormatFlickr8k, FormatKarpathy, FormatCOCO}

// DefaultOptions returns the options Load uses for zero fields.
func DefaultOptions() Options {
	return Options{Format: FormatAuto, Seed: 1, Ratios: [3]float64{0.8, 0.1, 0.1}}
}

// Load reads a data set from a folder (or a Karpathy/COCO JSON file) and assigns
// splits. Malformed caption files are errors naming the file and line; listed
// images that do not exist are dropped and counted in one note.
func Load(path string, opt Options) (*Dataset, error) {
	def := DefaultOptions()
	if opt.Format == "" {
		opt.Format = def.Format
	}
	if opt.Ratios == ([3]float64{}) {
		opt.Ratios = def.Ratios
	}
	if err := checkRatios(opt.Ratios); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data set %s: %w", path, notExist(err))
	}
	format := opt.Format
	if format == FormatAuto {
		if format, err = Detect(path); err != nil {
			return nil, err
		}
	}
	var d *Dataset
	switch format {
	case FormatKaggle:
		d, err = readKaggle(path, opt)
	case FormatFlickr8k:
		d, err = readFlickr8k(path, opt)
	case FormatKarpathy:
		d, err = readKarpathy(path, st.IsDir(), opt)
	case FormatCOCO:
		d, err = readCOCO(path, st.IsDir(), opt)
	default:
		return nil, fmt.Errorf(
			"data set %s: unknown format %q (want auto, kaggle, flickr8k, karpathy or coco)",
			path,
			format,
		)
	}
	if err != nil {
		return nil, err
	}
	if opt.SplitLists != "" {
		if format != FormatKaggle && format != FormatFlickr8k {
			return nil, fmt.Errorf(
				"split lists %s: only Flickr8k folders (Kaggle or original layout) take Flickr_8k.*Images.txt lists; %s is %s",
				opt.SplitLists,
				path,
				format,
			)
		}
		if err := d.applySplitLists(opt.SplitLists, true); err != nil {
			return nil, err
		}
	}
	if len(d.Examples) == 0 {
		return nil, fmt.Errorf("data set %s: no captions found", path)
	}
	if !opt.CaptionsOnly {
		if err := d.dropMissingImages(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func notExist(err error) error {
	if os.IsNotExist(err) {
		return fmt.Errorf("does not exist")
	}
	return err
}

func checkRatios(r [3]float64) error {
	sum := r[0] + r[1] + r[2]
	if r[0] <= 0 || r[1] < 0 || r[2] < 0 || sum < 0.999 || sum > 1.001 {
		return fmt.Errorf("split ratios %v: want three non-negative numbers (train > 0) that sum to 1", r)
	}
	return nil
}

// Detect names the format of a data set folder or file.
func Detect(path string) (Format, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("data set %s: %w", path, notExist(err))
	}
	if !st.IsDir() {
		base := filepath.Base(path)
		switch {
		case strings.HasPrefix(base, "dataset_") && strings.HasSuffix(base, ".json"):
			return FormatKarpathy, nil
		case strings.HasPrefix(base, "captions_") && strings.HasSuffix(base, ".json"):
			return FormatCOCO, nil
		case base == "captions.txt":
			return "", fmt.Errorf("data set %s: give the folder that holds captions.txt and Images/", path)
		}
		return "", fmt.Errorf(
			"data set %s: cannot tell its format from the file name (want dataset_*.json or captions_*.json)",
			path,
		)
	}
	has := func(name string) bool { _, err := os.Stat(filepath.Join(path, name)); return err == nil }
	switch {
	case has("captions.txt"):
		return FormatKaggle, nil
	case has("Flickr8k.token.txt"):
		return FormatFlickr8k, nil
	}
	if m, _ := filepath.Glob(filepath.Join(path, "dataset_*.json")); len(m) > 0 {
		return FormatKarpathy, nil
	}
	for _, pat := range []string{"annotations/captions_*.json", "captions_*.json"} {
		if m, _ := filepath.Glob(filepath.Join(path, pat)); len(m) > 0 {
			return FormatCOCO, nil
		}
	}
	return "", fmt.Errorf(
		"data set %s: no captions.txt (Kaggle Flickr8k), Flickr8k.token.txt (original Flickr8k), dataset_*.json (Karpathy) "+
			"or annotations/captions_*.json (COCO) in it",
		path,
	)
}

// SplitExamples returns the examples of one split, in source order.
func (d *Dataset) SplitExamples(split string) []Example {
	var out []Example
	for _, e := range d.Examples {
		if e.Split == split {
			out = append(out, e)
		}
	}
	return out
}

// NumCaptions counts the captions of all examples.
func (d *Dataset) NumCaptions() int {
	n := 0
	for _, e := range d.Examples {
		n += len(e.Captions)
	}
	return n
}

func (d *Dataset) note(format string, args ...any) {
	d.Notes = append(d.Notes, fmt.Sprintf(format, args...))
}

// dropMissingImages removes examples whose image file does not exist and notes how many.
func (d *Dataset) dropMissingImages() error {
	dirs := map[string]bool{}
	for _, e := range d.Examples {
		dirs[filepath.Dir(e.Path)] = true
	}
	for dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("data set %s: image folder %s does not exist", d.Source, dir)
		}
	}
	kept := d.Examples[:0]
	var missing []string
	for _, e := range d.Examples {
		if _, err := os.Stat(e.Path); err != nil {
			missing = append(missing, e.ImageID)
			continue
		}
		kept = append(kept, e)
	}
	d.Examples = kept
	if len(missing) > 0 {
		d.note("%d image(s) listed in %s are missing and were skipped (first: %s)", len(missing), d.Source, missing[0])
	}
	if len(d.Examples) == 0 {
		return fmt.Errorf("data set %s: none of the listed images exist", d.Source)
	}
	return nil
}

// splitByImage assigns Train/Val/Test to examples whose Split is empty, by
// image, from a seeded shuffle of the sorted image ids: the same seed and
// ratios give the same split on every machine (math/rand/v2's PCG).
func splitByImage(ex []Example, seed uint64, ratios [3]float64) {
	var ids []string
	for _, e := range ex {
		if e.Split == "" {
			ids = append(ids, e.ImageID)
		}
	}
	sort.Strings(ids)
	r := rand.New(rand.NewPCG(seed, 0x63617074696f6e67)) // "captiong"
	r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	nTrain := int(float64(len(ids))*ratios[0] + 0.5)
	nVal := int(float64(len(ids))*ratios[1] + 0.5)
	if nTrain+nVal > len(ids) {
		nVal = len(ids) - nTrain
	}
	split := make(map[string]string, len(ids))
	for i, id := range ids {
		switch {
		case i < nTrain:
			split[id] = Train
		case i < nTrain+nVal:
			split[id] = Val
		default:
			split[id] = Test
		}
	}
	for i := range ex {
		if ex[i].Split == "" {
			ex[i].Split = split[ex[i].ImageID]
		}
	}
}
