package metrics

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/captiongo/captiongo/data"
)

// cocoID accepts COCO's integer image ids and the string ids other tools write.
type cocoID string

func (c *cocoID) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*c = cocoID(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("image id %s is neither a number nor a string", b)
	}
	*c = cocoID(s)
	return nil
}

// ReadRefs reads a COCO captions annotation file ({"images": [{"id"}],
// "annotations": [{"image_id", "caption"}]}) into image id -> captions, with the
// image ids in file order.
func ReadRefs(path string) (ids []string, refs map[string][]string, err error) {
	var f struct {
		Images []struct {
			ID *cocoID `json:"id"`
		} `json:"images"`
		Annotations []struct {
			ImageID *cocoID `json:"image_id"`
			Caption *string `json:"caption"`
		} `json:"annotations"`
	}
	if err := data.ReadJSON(path, &f); err != nil {
		return nil, nil, err
	}
	if f.Annotations == nil {
		return nil, nil, fmt.Errorf("%s: no \"annotations\" list (want a COCO captions annotation file)", path)
	}
	refs = map[string][]string{}
	known := map[string]bool{}
	for i, im := range f.Images {
		if im.ID == nil {
			return nil, nil, fmt.Errorf("%s: images[%d] has no \"id\"", path, i)
		}
		known[string(*im.ID)] = true
	}
	for i, a := range f.Annotations {
		if a.ImageID == nil || a.Caption == nil {
			return nil, nil, fmt.Errorf("%s: annotations[%d] needs \"image_id\" and \"caption\"", path, i)
		}
		id := string(*a.ImageID)
		if len(f.Images) > 0 && !known[id] {
			return nil, nil, fmt.Errorf("%s: annotations[%d]: image_id %s is not in \"images\"", path, i, id)
		}
		if _, ok := refs[id]; !ok {
			ids = append(ids, id)
		}
		refs[id] = append(refs[id], *a.Caption)
	}
	for i, im := range f.Images {
		if _, ok := refs[string(*im.ID)]; !ok {
			return nil, nil, fmt.Errorf("%s: images[%d] (id %s) has no caption in \"annotations\"", path, i, *im.ID)
		}
	}
	return ids, refs, nil
}

// ReadHyps reads a COCO results file ([{"image_id", "caption"}]), one caption an image.
func ReadHyps(path string) (map[string]string, error) {
	var rows []struct {
		ImageID *cocoID `json:"image_id"`
		Caption *string `json:"caption"`
	}
	if err := data.ReadJSON(path, &rows); err != nil {
		return nil, err
	}
	hyps := map[string]string{}
	for i, r := range rows {
		if r.ImageID == nil || r.Caption == nil {
			return nil, fmt.Errorf("%s: entry %d needs \"image_id\" and \"caption\"", path, i)
		}
		id := string(*r.ImageID)
		if _, dup := hyps[id]; dup {
			return nil, fmt.Errorf("%s: entry %d: a second caption for image %s (one per image)", path, i, id)
		}
		hyps[id] = *r.Caption
	}
	return hyps, nil
}

// ScoreFiles scores a COCO results file against a COCO annotation file. Every
// annotated image needs exactly one hypothesis and every hypothesis an
// annotated image; the first mismatch is named.
func ScoreFiles(refsPath, hypsPath string) (Scores, error) {
	return ScoreFilesMETEOR(refsPath, hypsPath, "")
}

// ScoreFilesMETEOR is ScoreFiles plus METEOR with the given jar ("" = none).
func ScoreFilesMETEOR(refsPath, hypsPath, jar string) (Scores, error) {
	ids, refs, err := ReadRefs(refsPath)
	if err != nil {
		return Scores{}, err
	}
	hyps, err := ReadHyps(hypsPath)
	if err != nil {
		return Scores{}, err
	}
	for _, id := range sortedKeys(hyps) {
		if _, ok := refs[id]; !ok {
			return Scores{}, fmt.Errorf("%s: image %s has a caption but is not in %s", hypsPath, id, refsPath)
		}
	}
	for _, id := range ids {
		if _, ok := hyps[id]; !ok {
			return Scores{}, fmt.Errorf("%s: no caption for image %s of %s", hypsPath, id, refsPath)
		}
	}
	return ScoreAll(ids, refs, hyps, jar)
}

// sortedKeys lists the ids: numeric ids in numeric order, others by spelling.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.SliceStable(out, func(i, j int) bool {
		x, e1 := strconv.ParseInt(out[i], 10, 64)
		y, e2 := strconv.ParseInt(out[j], 10, 64)
		if e1 == nil && e2 == nil {
			return x < y
		}
		return out[i] < out[j]
	})
	return out
}
