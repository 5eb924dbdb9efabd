package data

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// BenchmarkBaselineTransform decodes real JPEGs and applies the baseline's
// Resize(356) + RandomCrop(299) + Normalize.
func BenchmarkBaselineTransform(b *testing.B) {
	dir := testutil.SharedData(b, "flickr8k-mini/Images")
	entries, _ := os.ReadDir(dir)
	tf := BaselineTransform(false)
	buf := make([]float32, 3*299*299)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		img, err := DecodeImage(filepath.Join(dir, entries[i%100].Name()))
		if err != nil {
			b.Fatal(err)
		}
		if err := tf.Apply(img, nil, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJPEG decodes real Flickr8k JPEGs with the build's decoder
// (libjpeg-turbo) and with Go's image/jpeg (the nolibjpeg fallback).
func BenchmarkDecodeJPEG(b *testing.B) {
	dir := testutil.SharedData(b, "flickr8k-mini/Images")
	entries, _ := os.ReadDir(dir)
	for _, c := range []struct {
		name   string
		decode func(string) (*RGB, error)
	}{{"build", DecodeImage}, {"go", DecodeImageGo}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := c.decode(filepath.Join(dir, entries[i%100].Name())); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
