package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
)

// TestPreprocessEqualsTorchvision: `captiongo preprocess` writes, for real
// Flickr8k JPEGs (original sizes and the progressive 224 x 224 copies) and for
// gray and CMYK JPEGs PIL writes here, what torchvision's transform of the same
// experiment gives on Image.open(f).convert("RGB"): every transform a config
// offers (Resize + CenterCrop, the baseline's eval view; Resize alone; no
// resize; the ImageNet normalisation) to 1e-6, in the order the files were
// given.
func TestPreprocessEqualsTorchvision(t *testing.T) {
	if !data.JPEGMatchesPIL {
		if os.Getenv("CI") != "" {
			t.Fatalf("built without libjpeg-turbo (%s): CI must build with it", data.JPEGDecoder)
		}
		t.Skipf("built without libjpeg-turbo (%s): pixels are not PIL's", data.JPEGDecoder)
	}
	mini := testutil.SharedData(t, "flickr8k-mini/Images")
	d224 := testutil.SharedData(t, "flickr8k-224/Images")
	tmp := t.TempDir()
	pick := func(dir string, n int) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries[len(entries)-n:] { // the list's end, reversed: not the folder's order
			out = append([]string{filepath.Join(dir, e.Name())}, out...)
		}
		return out
	}
	photos := append(pick(mini, 6), pick(d224, 4)...)
	gray, cmyk := filepath.Join(tmp, "gray.jpg"), filepath.Join(tmp, "cmyk.jpg")
	testutil.RunPython(t, `import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
im.convert("L").save(sys.argv[2], quality=90)
im.convert("CMYK").save(sys.argv[3], quality=90)
`, photos[0], gray, cmyk)
	photos = append(photos, gray, cmyk)
	cases := []struct {
		name  string
		args  []string
		torch string // torchvision transforms before ToTensor
		norm  string
	}{
		{
			"baseline eval (Resize 356, CenterCrop 299)",
			[]string{"-config", "experiments/flickr8k_attention.toml", "-size", "356", "-crop", "299"},
			"T.Resize((356, 356)), T.CenterCrop(299)",
			"half",
		},
		{
			"flickr8k recipe (Resize 299)",
			[]string{"-config", "experiments/flickr8k_baseline.toml"},
			"T.Resize((299, 299))",
			"half",
		},
		{
			"ImageNet normalisation, odd crop",
			[]string{"-size", "333", "-crop", "281", "-normalize", "imagenet"},
			"T.Resize((333, 333)), T.CenterCrop(281)",
			"imagenet",
		},
	}
	means := map[string]string{
		"half":     "T.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])",
		"imagenet": "T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])",
	}
	for i, c := range cases {
		out := filepath.Join(tmp, fmt.Sprintf("go%d.npy", i))
		var so, se strings.Builder
		if code := run(append(append([]string{"preprocess"}, c.args...), append([]string{"-out", out}, photos...)...), &so,
			&se); code != 0 {
			t.Fatalf("%s: preprocess exited %d: %s", c.name, code, se.String())
		}
		got, shape, err := torch.ReadNpy(out)
		if err != nil {
			t.Fatal(err)
		}
		ref := filepath.Join(tmp, fmt.Sprintf("ref%d.npy", i))
		testutil.RunPython(t, fmt.Sprintf(`import sys, numpy as np, torch, torchvision.transforms as T
from PIL import Image
tf = T.Compose([%s, T.ToTensor(), %s])
np.save(sys.argv[1], torch.stack([tf(Image.open(f).convert("RGB")) for f in sys.argv[2:]]).numpy())
`, c.torch, means[c.norm]), append([]string{ref}, photos...)...)
		want, wshape, err := torch.ReadNpy(ref)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(shape) != fmt.Sprint(wshape) {
			t.Fatalf("%s: shape %v, torchvision %v", c.name, shape, wshape)
		}
		worst := 0.0
		for j := range got {
			worst = math.Max(worst, math.Abs(float64(got[j]-want[j])))
		}
		t.Logf("%s: %v, max |captiongo - torchvision| = %.3g", c.name, shape, worst)
		if worst > 1e-6 {
			t.Errorf("%s: max |diff| %.3g > 1e-6", c.name, worst)
		}
	}
	// No resize, no crop: the 224 x 224 copies as they are.
	out := filepath.Join(tmp, "asis.npy")
	var so, se strings.Builder
	if code := run(append([]string{"preprocess", "-size", "0", "-crop", "0", "-out", out}, photos[6:10]...), &so,
		&se); code != 0 {
		t.Fatalf("preprocess -size 0 -crop 0 exited %d: %s", code, se.String())
	}
	if _, shape, err := torch.ReadNpy(out); err != nil || fmt.Sprint(shape) != "[4 3 224 224]" {
		t.Errorf("as-is shape %v (%v), want [4 3 224 224]", shape, err)
	}
	// Bad input: one line naming the file.
	se.Reset()
	bad := filepath.Join(tmp, "bad.jpg")
	os.WriteFile(bad, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16}, 0o644)
	if code := run([]string{"preprocess", "-out", filepath.Join(tmp, "x.npy"), photos[0], bad}, &so, &se); code != 1 ||
		!strings.Contains(se.String(), bad) || strings.Count(strings.TrimSpace(se.String()), "\n") > 0 {
		t.Errorf("preprocess with a broken JPEG exited %d: %q", code, se.String())
	}
}
