package torch

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseNpy: whatever the bytes, the .npy reader returns an error or values
// that fill the shape it reports; it never panics, and it never allocates more
// than the file holds (a crafted shape or header length is an error).
func FuzzParseNpy(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "x.npy")
	if err := WriteNpy(good, []float32{1, 2, 3, 4, 5, 6}, []int64{2, 3}); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(bytes.Replace(b, []byte("(2, 3)"), []byte("(-2, 3)"), 1))                  // negative dimension
	f.Add(bytes.Replace(b, []byte("(2, 3)"), []byte("(4611686018427387904, 4)"), 1)) // overflowing size
	f.Add(bytes.Replace(b, []byte("(2, 3)"), []byte("(0, 3)"), 1))
	v2 := append([]byte("\x93NUMPY\x02\x00\xff\xff\xff\xff"), b[10:]...) // a 4 GB header length
	f.Add(v2)
	f.Add(b[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		data, shape, err := ParseNpy(b)
		if err != nil {
			return
		}
		n := int64(1)
		for _, d := range shape {
			if d < 0 {
				t.Fatalf("accepted shape %v", shape)
			}
			n *= d
		}
		if int64(len(data)) != n || 4*n > int64(len(b)) {
			t.Fatalf("shape %v but %d values from %d bytes", shape, len(data), len(b))
		}
	})
}
