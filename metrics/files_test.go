package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, s string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const refsJSON = `{"images": [{"id": 1}, {"id": 2}],
 "annotations": [{"image_id": 1, "caption": "A dog runs."}, {"image_id": 1, "caption": "A dog is running on grass"},
                 {"image_id": 2, "caption": "Two men play ball."}]}`

func TestScoreFiles(t *testing.T) {
	dir := t.TempDir()
	refs := writeFile(t, dir, "refs.json", refsJSON)
	hyps := writeFile(
		t,
		dir,
		"hyps.json",
		`[{"image_id": 2, "caption": "two men play ball"}, {"image_id": 1, "caption": "a dog runs"}]`,
	)
	s, err := ScoreFiles(refs, hyps)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bleu1 < 0.99 || s.CIDEr <= 0 {
		t.Errorf("near-copies scored %+v", s)
	}
	cases := []struct{ name, hyps, want string }{
		{
			"unknown image",
			`[{"image_id": 1, "caption": "x"}, {"image_id": 2, "caption": "y"}, {"image_id": 7, "caption": "z"}]`,
			"image 7 has a caption but is not in",
		},
		{"missing image", `[{"image_id": 1, "caption": "x"}]`, "no caption for image 2"},
		{"bad json", "[{\"image_id\": 1,\n \"caption\": }]", "hyps.json:2: bad JSON"},
		{
			"duplicate",
			`[{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]`,
			"entry 1: a second caption for image 1",
		},
		{"no caption", `[{"image_id": 1}]`, "entry 0 needs \"image_id\" and \"caption\""},
		{"wrong type", `{"image_id": 1}`, "hyps.json"},
	}
	for _, c := range cases {
		h := writeFile(t, dir, "hyps.json", c.hyps)
		_, err := ScoreFiles(refs, h)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	bad := writeFile(t, dir, "refs2.json", `{"images": [{"id": 1}], "annotations": [{"image_id": 3, "caption": "x"}]}`)
	if _, err := ScoreFiles(bad, hyps); err == nil ||
		!strings.Contains(err.Error(), "annotations[0]: image_id 3 is not in") {
		t.Errorf("annotation for an unknown image: %v", err)
	}
	if _, err := ScoreFiles(filepath.Join(dir, "absent.json"), hyps); err == nil ||
		!strings.Contains(err.Error(), "absent.json: does not exist") {
		t.Errorf("missing file: %v", err)
	}
}
