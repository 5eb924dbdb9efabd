package data

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// captionLine is one caption as read from a file, with where it was.
type captionLine struct {
	image   string
	caption string
	line    int
}

func checkCaption(file string, line int, image, caption string) error {
	if !utf8.ValidString(image) || !utf8.ValidString(caption) {
		return fmt.Errorf("%s:%d: not valid UTF-8", file, line)
	}
	if strings.TrimSpace(image) == "" {
		return fmt.Errorf("%s:%d: empty image name", file, line)
	}
	if strings.TrimSpace(caption) == "" {
		return fmt.Errorf("%s:%d: empty caption for %s", file, line, image)
	}
	return nil
}

// ParseKaggleCaptions parses Kaggle Flickr8k's captions.txt: a CSV with the
// header "image,caption" and one caption a record (quoted when it holds commas
// or quotes). name is used in error messages.
func ParseKaggleCaptions(r io.Reader, name string) ([]captionLine, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file (want the header \"image,caption\")", name)
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	if len(head) != 2 || strings.TrimPrefix(head[0], "\ufeff") != "image" || head[1] != "caption" {
		return nil, fmt.Errorf("%s:1: header is %q, want \"image,caption\"", name, strings.Join(head, ","))
	}
	var out []captionLine
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvErr(name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != 2 {
			return nil, fmt.Errorf(
				"%s:%d: %d fields, want 2 (image,caption; quote a caption that holds commas)",
				name,
				line,
				len(rec),
			)
		}
		if err := checkCaption(name, line, rec[0], rec[1]); err != nil {
			return nil, err
		}
		out = append(out, captionLine{image: rec[0], caption: rec[1], line: line})
	}
	return out, nil
}

func csvErr(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: malformed CSV: %v", name, pe.Line, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// ParseFlickrTokens parses the original Flickr8k.token.txt: lines
// "<image>#<n><TAB><caption>". Some lines of the published file separate with
// a space instead of the tab; those are accepted.
func ParseFlickrTokens(r io.Reader, name string) ([]captionLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var out []captionLine
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		key, caption, ok := strings.Cut(text, "\t")
		if !ok || strings.ContainsAny(key, " ") {
			key, caption, ok = strings.Cut(text, " ")
		}
		hash := strings.LastIndexByte(key, '#')
		if !ok || hash <= 0 {
			return nil, fmt.Errorf("%s:%d: want \"<image>#<n><TAB><caption>\", got %q", name, line, clip(text))
		}
		if _, err := strconv.Atoi(key[hash+1:]); err != nil {
			return nil, fmt.Errorf("%s:%d: caption number %q after '#' is not a number", name, line, key[hash+1:])
		}
		image := key[:hash]
		if err := checkCaption(name, line, image, caption); err != nil {
			return nil, err
		}
		out = append(out, captionLine{image: image, caption: strings.TrimSpace(caption), line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// group collects caption lines into examples, one per image, in first-seen order.
func group(lines []captionLine, imageDir string) []Example {
	idx := map[string]int{}
	var ex []Example
	for _, l := range lines {
		i, ok := idx[l.image]
		if !ok {
			i = len(ex)
			idx[l.image] = i
			ex = append(ex, Example{ImageID: l.image, Path: filepath.Join(imageDir, l.image)})
		}
		ex[i].Captions = append(ex[i].Captions, l.caption)
	}
	return ex
}

func readKaggle(dir string, opt Options) (*Dataset, error) {
	name := filepath.Join(dir, "captions.txt")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("Kaggle Flickr8k folder %s: %s: %w", dir, name, notExist(err))
	}
	defer f.Close()
	lines, err := ParseKaggleCaptions(f, name)
	if err != nil {
		return nil, err
	}
	imageDir := opt.ImageDir
	if imageDir == "" {
		imageDir = filepath.Join(dir, "Images")
	}
	d := &Dataset{Format: FormatKaggle, Source: name, Examples: group(lines, imageDir)}
	splitByImage(d.Examples, opt.Seed, opt.Ratios)
	return d, nil
}

// readList reads a Flickr_8k.*Images.txt list; ok is false when the file is absent.
func readList(path string) (map[string]bool, bool, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	set := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			set[l] = true
		}
	}
	return set, true, nil
}

func readFlickr8k(dir string, opt Options) (*Dataset, error) {
	name := filepath.Join(dir, "Flickr8k.token.txt")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("Flickr8k folder %s: %s: %w", dir, name, notExist(err))
	}
	defer f.Close()
	lines, err := ParseFlickrTokens(f, name)
	if err != nil {
		return nil, err
	}
	imageDir := opt.ImageDir
	if imageDir == "" {
		imageDir = filepath.Join(dir, "Flicker8k_Dataset") // the release's own (misspelt) name
		for _, alt := range []string{"Flickr8k_Dataset", "Images"} {
			if st, err := os.Stat(filepath.Join(dir, alt)); err == nil && st.IsDir() {
				imageDir = filepath.Join(dir, alt)
			}
		}
	}
	d := &Dataset{Format: FormatFlickr8k, Source: name, Examples: group(lines, imageDir)}
	if opt.SplitLists != "" {
		return d, nil // Load applies them
	}
	if err := d.applySplitLists(dir, false); err != nil {
		return nil, err
	}
	if d.Examples[0].Split == "" {
		splitByImage(d.Examples, opt.Seed, opt.Ratios)
		d.note(
			"no Flickr_8k.*Images.txt lists in %s: split by image with seed %d and ratios %v",
			dir,
			opt.Seed,
			opt.Ratios,
		)
	}
	return d, nil
}

// splitListFiles are the standard Flickr8k split lists, by split.
var splitListFiles = map[string]string{
	Train: "Flickr_8k.trainImages.txt",
	Val:   "Flickr_8k.devImages.txt",
	Test:  "Flickr_8k.testImages.txt",
}

// applySplitLists assigns splits from the Flickr_8k.*Images.txt lists in dir.
// Images in no list are val when there is no dev list, else skipped; names in
// a list that the data set lacks are noted. With required, a missing train or
// test list is an error naming the file; otherwise no lists at all leave the
// splits unassigned.
func (d *Dataset) applySplitLists(dir string, required bool) error {
	if st, err := os.Stat(dir); required && (err != nil || !st.IsDir()) {
		return fmt.Errorf(
			"split lists %s: not a folder (want one holding Flickr_8k.trainImages.txt and Flickr_8k.testImages.txt)",
			dir,
		)
	}
	lists := map[string]map[string]bool{}
	for _, split := range []string{Train, Val, Test} {
		file := filepath.Join(dir, splitListFiles[split])
		set, ok, err := readList(file)
		if err != nil {
			return fmt.Errorf("split list %s: %w", file, err)
		}
		if !ok && required && split != Val {
			return fmt.Errorf(
				"split list %s: does not exist (the standard Flickr8k %s list is needed to split %s)",
				file,
				split,
				d.Source,
			)
		}
		if ok {
			lists[split] = set
		}
	}
	if len(lists) == 0 {
		return nil
	}
	_, haveDev := lists[Val]
	present := map[string]bool{}
	var unlisted []string
	kept := d.Examples[:0]
	for _, e := range d.Examples {
		present[e.ImageID] = true
		e.Split = ""
		for _, s := range []string{Train, Val, Test} {
			if lists[s][e.ImageID] {
				e.Split = s
			}
		}
		if e.Split == "" {
			unlisted = append(unlisted, e.ImageID)
			if haveDev {
				continue
			}
			e.Split = Val
		}
		kept = append(kept, e)
	}
	d.Examples = kept
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		if haveDev {
			d.note(
				"%d image(s) in %s are in none of the split lists and were skipped (first: %s)",
				len(unlisted),
				d.Source,
				unlisted[0],
			)
		} else {
			d.note("Flickr_8k.devImages.txt is absent: the %d image(s) in neither the train nor the test list form the val "+
				"split", len(unlisted))
		}
	}
	for _, split := range []string{Train, Val, Test} {
		var absent []string
		for name := range lists[split] {
			if !present[name] {
				absent = append(absent, name)
			}
		}
		if len(absent) > 0 {
			sort.Strings(absent)
			d.note(
				"%d name(s) in %s are not in %s and were skipped (first: %s)",
				len(absent),
				filepath.Join(dir, splitListFiles[split]),
				d.Source,
				absent[0],
			)
		}
	}
	return nil
}

// karpathyFile is the layout of Karpathy's dataset_{flickr8k,flickr30k,coco}.json.
type karpathyFile struct {
	Images []struct {
		Filename  string `json:"filename"`
		Filepath  string `json:"filepath"`
		Split     string `json:"split"`
		Sentences []struct {
			Raw string `json:"raw"`
		} `json:"sentences"`
	} `json:"images"`
}

func readKarpathy(path string, isDir bool, opt Options) (*Dataset, error) {
	file := path
	root := filepath.Dir(path)
	if isDir {
		m, _ := filepath.Glob(filepath.Join(path, "dataset_*.json"))
		if len(m) != 1 {
			return nil, fmt.Errorf("Karpathy folder %s: want exactly one dataset_*.json, found %d", path, len(m))
		}
		file, root = m[0], path
	}
	var kf karpathyFile
	if err := ReadJSON(file, &kf); err != nil {
		return nil, err
	}
	imageDir := opt.ImageDir
	if imageDir == "" {
		imageDir = root
		for _, alt := range []string{"Images", "images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images"} {
			if st, err := os.Stat(filepath.Join(root, alt)); err == nil && st.IsDir() {
				imageDir = filepath.Join(root, alt)
				break
			}
		}
	}
	d := &Dataset{Format: FormatKarpathy, Source: file}
	restval := 0
	for i, im := range kf.Images {
		where := fmt.Sprintf("%s: images[%d]", file, i)
		if im.Filename == "" {
			return nil, fmt.Errorf("%s: no \"filename\"", where)
		}
		split := im.Split
		switch split {
		case "train", "val", "test":
		case "restval":
			split = Train
			restval++
		default:
			return nil, fmt.Errorf("%s (%s): split %q, want train, val, test or restval", where, im.Filename, im.Split)
		}
		e := Example{ImageID: im.Filename, Path: filepath.Join(imageDir, im.Filepath, im.Filename), Split: split}
		for j, s := range im.Sentences {
			if err := checkCaption(fmt.Sprintf("%s.sentences[%d]", where, j), 0, im.Filename, s.Raw); err != nil {
				return nil, errors.New(strings.Replace(err.Error(), ":0:", ":", 1))
			}
			e.Captions = append(e.Captions, s.Raw)
		}
		if len(e.Captions) == 0 {
			return nil, fmt.Errorf("%s (%s): no sentences", where, im.Filename)
		}
		d.Examples = append(d.Examples, e)
	}
	if restval > 0 {
		d.note("%d restval image(s) counted as train", restval)
	}
	return d, nil
}

// ReadJSON decodes a JSON file; errors name the file, and the line of a
// syntax error or the field of a wrong type.
func ReadJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, notExist(err))
	}
	if err := json.Unmarshal(b, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + strings.Count(string(b[:se.Offset]), "\n")
			return fmt.Errorf("%s:%d: bad JSON: %v", file, line, err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: %s has the wrong type (%v)", file, te.Field, te.Value)
		}
		return fmt.Errorf("%s: bad JSON: %v", file, err)
	}
	return nil
}

// cocoFile is the layout of COCO's captions_{train,val}YYYY.json.
type cocoFile struct {
	Images []struct {
		ID       int64  `json:"id"`
		FileName string `json:"file_name"`
	} `json:"images"`
	Annotations []struct {
		ImageID int64  `json:"image_id"`
		Caption string `json:"caption"`
	} `json:"annotations"`
}

func readCOCO(path string, isDir bool, opt Options) (*Dataset, error) {
	var files []string
	root := filepath.Dir(path)
	if isDir {
		root = path
		for _, pat := range []string{"annotations/captions_*.json", "captions_*.json"} {
			m, _ := filepath.Glob(filepath.Join(path, pat))
			files = append(files, m...)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("COCO folder %s: no annotations/captions_*.json", path)
		}
	} else {
		files = []string{path}
		if filepath.Base(root) == "annotations" {
			root = filepath.Dir(root)
		}
	}
	d := &Dataset{Format: FormatCOCO, Source: strings.Join(files, ", ")}
	for _, file := range files {
		var cf cocoFile
		if err := ReadJSON(file, &cf); err != nil {
			return nil, err
		}
		// captions_train2017.json -> split train, images in <root>/train2017.
		stem := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "captions_"), ".json")
		split := Train
		if strings.HasPrefix(stem, "val") {
			split = Val
		}
		imageDir := opt.ImageDir
		if imageDir == "" {
			imageDir = filepath.Join(root, stem)
			if _, err := os.Stat(imageDir); err != nil {
				if alt := filepath.Join(root, "images", stem); dirExists(alt) {
					imageDir = alt
				}
			}
		}
		byID := map[int64]int{}
		for i, im := range cf.Images {
			if im.FileName == "" {
				return nil, fmt.Errorf("%s: images[%d] (id %d): no \"file_name\"", file, i, im.ID)
			}
			if _, dup := byID[im.ID]; dup {
				return nil, fmt.Errorf("%s: images[%d]: duplicate image id %d", file, i, im.ID)
			}
			byID[im.ID] = len(d.Examples)
			d.Examples = append(
				d.Examples,
				Example{
					ImageID: strconv.FormatInt(im.ID, 10),
					Path:    filepath.Join(imageDir, im.FileName),
					Split:   split,
				},
			)
		}
		for i, a := range cf.Annotations {
			j, ok := byID[a.ImageID]
			if !ok {
				return nil, fmt.Errorf("%s: annotations[%d]: image_id %d is not in \"images\"", file, i, a.ImageID)
			}
			if err := checkCaption(fmt.Sprintf("%s: annotations[%d]", file, i), 0, d.Examples[j].ImageID,
				a.Caption); err != nil {
				return nil, errors.New(strings.Replace(err.Error(), ":0:", ":", 1))
			}
			d.Examples[j].Captions = append(d.Examples[j].Captions, a.Caption)
		}
	}
	kept := d.Examples[:0]
	noCaps := 0
	for _, e := range d.Examples {
		if len(e.Captions) == 0 {
			noCaps++
			continue
		}
		kept = append(kept, e)
	}
	d.Examples = kept
	if noCaps > 0 {
		d.note("%d COCO image(s) without captions were skipped", noCaps)
	}
	// COCO publishes no test captions: val is halved, by image and seed, into val and test.
	var val []Example
	for i := range d.Examples {
		if d.Examples[i].Split == Val {
			d.Examples[i].Split = ""
			val = append(val, d.Examples[i])
		}
	}
	if len(val) > 0 {
		splitByImage(d.Examples, opt.Seed, [3]float64{0, 0.5, 0.5})
		d.note(
			"COCO val images split by image into val and test halves (seed %d); COCO's test captions are not public",
			opt.Seed,
		)
	}
	return d, nil
}

func dirExists(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }
