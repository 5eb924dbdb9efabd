package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadRefsAndHyps: COCO annotation and results files never panic the
// readers; errors name the file, and what is accepted is consistent (every
// listed image has references; one caption per hypothesis image).
func FuzzReadRefsAndHyps(f *testing.F) {
	f.Add([]byte(`{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "a dog"}]}`))
	f.Add([]byte(`{"images": [{"id": "x"}], "annotations": [{"image_id": "y", "caption": "a"}]}`))
	f.Add([]byte(`[{"image_id": 1, "caption": "a dog"}, {"image_id": 1, "caption": "again"}]`))
	f.Add([]byte(`[{"image_id": 1.5e300, "caption": null}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "x.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ids, refs, err := ReadRefs(p)
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("ReadRefs error does not name the file: %v", err)
		}
		if err == nil {
			for _, id := range ids {
				if len(refs[id]) == 0 {
					t.Fatalf("image %s listed without references", id)
				}
			}
		}
		hyps, err := ReadHyps(p)
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("ReadHyps error does not name the file: %v", err)
		}
		_ = hyps
	})
}
