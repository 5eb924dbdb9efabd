package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// pilJPEGScript writes JPEG variants with PIL (argv[1] is a real photo, argv[2]
// the folder), then prints, for every file after argv[2], what
// Image.open(f).convert("RGB") gives: size and the SHA-256 of its bytes.
const pilJPEGScript = `
import sys, os, json, hashlib
import numpy as np
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
photo = Image.open(src).convert("RGB").crop((13, 7, 13 + 161, 7 + 97))  # odd sizes: partial MCUs
photo.save(os.path.join(out, "s444.jpg"), quality=90, subsampling=0)
photo.save(os.path.join(out, "s422.jpg"), quality=90, subsampling=1)
photo.save(os.path.join(out, "s420.jpg"), quality=90, subsampling=2)
photo.save(os.path.join(out, "progressive.jpg"), quality=75, progressive=True)
photo.save(os.path.join(out, "optimized_q30.jpg"), quality=30, optimize=True)
photo.convert("L").save(os.path.join(out, "gray.jpg"), quality=85)
photo.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=90)
photo.convert("L").save(os.path.join(out, "gray_progressive.jpg"), quality=85, progressive=True)
photo.resize((1, 1)).save(os.path.join(out, "one_pixel.jpg"))
photo.resize((1, 1)).convert("CMYK").save(os.path.join(out, "one_pixel_cmyk.jpg"))
photo.resize((640, 7)).save(os.path.join(out, "wide.jpg"), quality=95, subsampling=2)
photo.save(os.path.join(out, "png_named.jpg"), format="PNG")
res = []
for f in sys.argv[3:] + sorted(os.path.join(out, n) for n in os.listdir(out)):
    a = np.asarray(Image.open(f).convert("RGB"))
    res.append({"file": f, "w": a.shape[1], "h": a.shape[0], "sha": hashlib.sha256(a.tobytes()).hexdigest()})
print(json.dumps(res))
`

type pilDecoded struct {
	File string `json:"file"`
	W    int    `json:"w"`
	H    int    `json:"h"`
	SHA  string `json:"sha"`
}

// TestJPEGPixelsEqualPIL decodes every JPEG of flickr8k-mini (baseline 4:2:0,
// original sizes), 300 of flickr8k-224 (progressive) and JPEGs PIL writes here
// (4:4:4, 4:2:2, 4:2:0, progressive, optimised Huffman tables, grayscale,
// Adobe CMYK, 1 x 1, odd sizes) and requires the RGB bytes to be PIL's,
// byte for byte. A build without libjpeg-turbo cannot pass it, so it skips
// there, except in CI, where it fails.
func TestJPEGPixelsEqualPIL(t *testing.T) {
	if !JPEGMatchesPIL {
		msg := "built with the nolibjpeg tag: JPEGs are decoded by " + JPEGDecoder
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must build with libjpeg-turbo (.ci/run installs libjpeg62-turbo-dev)")
		}
		t.Skip(msg)
	}
	mini := testutil.SharedData(t, "flickr8k-mini/Images")
	d224 := testutil.SharedData(t, "flickr8k-224/Images")
	var files []string
	for _, d := range []struct {
		dir string
		n   int
	}{{mini, -1}, {d224, 300}} {
		entries, err := os.ReadDir(d.dir)
		if err != nil {
			t.Fatal(err)
		}
		if d.n > 0 && len(entries) > d.n {
			entries = entries[:d.n]
		}
		for _, e := range entries {
			files = append(files, filepath.Join(d.dir, e.Name()))
		}
	}
	out := t.TempDir()
	var ref []pilDecoded
	js := testutil.RunPython(t, pilJPEGScript, append([]string{files[0], out}, files...)...)
	if err := json.Unmarshal([]byte(js), &ref); err != nil {
		t.Fatalf("PIL's answer: %v", err)
	}
	if len(ref) < len(files)+12 {
		t.Fatalf("PIL decoded %d files, want %d", len(ref), len(files)+12)
	}
	bad := 0
	for _, r := range ref {
		m, err := DecodeImage(r.File)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		sum := sha256.Sum256(m.Pix)
		if m.W != r.W || m.H != r.H || hex.EncodeToString(sum[:]) != r.SHA {
			bad++
			if bad <= 3 {
				t.Errorf(
					"%s: %dx%d decoded by %s differs from PIL's %dx%d (%s)",
					r.File,
					m.W,
					m.H,
					JPEGDecoder,
					r.W,
					r.H,
					pilDiff(t, r.File, m),
				)
			}
		}
	}
	t.Logf("%s: %d of %d files decode to PIL's exact bytes", JPEGDecoder, len(ref)-bad, len(ref))
	if bad > 0 {
		t.Errorf("%d of %d files differ from PIL", bad, len(ref))
	}
}

// pilDiff says how far m is from PIL's decoding of file.
func pilDiff(t *testing.T, file string, m *RGB) string {
	raw := filepath.Join(t.TempDir(), "pil.raw")
	testutil.RunPython(
		t,
		"import sys, numpy as np\nfrom PIL import "+
			"Image\nnp.asarray(Image.open(sys.argv[1]).convert('RGB')).tofile(sys.argv[2])\n",
		file,
		raw,
	)
	b, err := os.ReadFile(raw)
	if err != nil || len(b) != len(m.Pix) {
		return fmt.Sprintf("PIL gave %d bytes", len(b))
	}
	maxd, n := 0, 0
	for i := range b {
		d := int(b[i]) - int(m.Pix[i])
		if d < 0 {
			d = -d
		}
		if d > 0 {
			n++
		}
		maxd = max(maxd, d)
	}
	return fmt.Sprintf("%d of %d bytes differ, max %d levels", n, len(b), maxd)
}

// TestJPEGBadInput: every bad file gets one error naming it, never a panic,
// and the odd-but-valid ones decode.
func TestJPEGBadInput(t *testing.T) {
	dir := t.TempDir()
	photo := testutil.SharedData(t, "flickr8k-mini/Images/1000268201_693b08cb0e.jpg")
	b, err := os.ReadFile(photo)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A 20,000 x 20,000 header: the photo with its SOF0 size patched.
	huge := append([]byte(nil), b...)
	sof := bytes.Index(huge, []byte{0xff, 0xc0})
	if sof < 0 {
		t.Fatal("no SOF0 marker in the photo")
	}
	huge[sof+5], huge[sof+6], huge[sof+7], huge[sof+8] = 0x4e, 0x20, 0x4e, 0x20
	// A frame header claiming 2 components (neither gray, YCbCr nor CMYK).
	badSOF := append([]byte(nil), b...)
	badSOF[sof+9] = 2
	cases := []struct{ path, want string }{
		{write("empty.jpg", nil), "empty file"},
		{write("soi_only.jpg", b[:4]), "corrupt or truncated jpeg"},
		{write("header_only.jpg", b[:sof+40]), "corrupt or truncated jpeg"},
		{write("two_thirds.jpg", b[:2*len(b)/3]), "truncated"},
		{write("huge.jpg", huge), "over the limit"},
		{write("two_layers.jpg", badSOF), "corrupt or truncated jpeg"},
		{write("text.jpg", []byte("not a picture at all")), "not a JPEG or PNG"},
	}
	for _, c := range cases {
		_, err := DecodeImage(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf(
				"DecodeImage(%s) = %v, want one line naming the file and saying %q",
				filepath.Base(c.path),
				err,
				c.want,
			)
		}
	}
	// The same photo missing only its final EOI marker: PIL decodes it, so must we.
	noEOI := write("no_eoi.jpg", b[:len(b)-2])
	m, err := DecodeImage(noEOI)
	if err != nil {
		t.Fatalf("a JPEG missing only its EOI marker: %v", err)
	}
	full, err := DecodeImage(photo)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Pix, full.Pix) {
		t.Error("a JPEG missing only its EOI marker decoded to different pixels")
	}
}

// TestGoJPEGDecoderVsPIL measures how far the pure-Go fallback is from PIL's
// (libjpeg-turbo, with its "fancy" chroma upsampling) on real Flickr8k JPEGs.
// The two decoders legitimately differ; the test states the bound it holds.
func TestGoJPEGDecoderVsPIL(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-mini/Images")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries[:10] {
		files = append(files, filepath.Join(dir, e.Name()))
	}
	tmp := t.TempDir()
	script := "import sys, numpy as np\nfrom PIL import Image\nfor i, f in enumerate(sys.argv[1:]):\n    " +
		"np.asarray(Image.open(f).convert('RGB')).tofile('" + tmp + "/%d.raw' % i)\n"
	testutil.RunPython(t, script, files...)
	var sum, n float64
	maxd := 0
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeJPEGGo(f, b)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := os.ReadFile(filepath.Join(tmp, fmt.Sprintf("%d.raw", i)))
		if err != nil {
			t.Fatal(err)
		}
		if len(ref) != len(m.Pix) {
			t.Fatalf("%s: %d bytes, PIL gave %d", f, len(m.Pix), len(ref))
		}
		for j := range ref {
			d := int(m.Pix[j]) - int(ref[j])
			if d < 0 {
				d = -d
			}
			maxd = max(maxd, d)
			sum += float64(d)
			n++
		}
	}
	mean := sum / n
	t.Logf(
		"Go image/jpeg vs PIL on %d real JPEGs: mean |diff| %.3f levels, max %d levels (of 255)",
		len(files),
		mean,
		maxd,
	)
	if mean > 2.0 {
		t.Errorf("mean |diff| %.3f levels exceeds the stated bound of 2 levels", mean)
	}
	if mean == 0 {
		t.Error("Go's decoder matched PIL exactly: the bound above no longer describes it")
	}
}
