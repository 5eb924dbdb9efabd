package data

import (
	"encoding/binary"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// testPicture is a deterministic 3-channel picture with edges, gradients and noise.
func testPicture(w, h int, seed uint64) *RGB {
	r := rand.New(rand.NewPCG(seed, 7))
	m := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := 3 * (y*w + x)
			m.Pix[i] = uint8((x * 255) / w)
			m.Pix[i+1] = uint8((y * 255) / h)
			if (x/7+y/5)%2 == 0 {
				m.Pix[i+2] = 230
			} else {
				m.Pix[i+2] = uint8(r.IntN(256))
			}
		}
	}
	return m
}

func writePNG(t *testing.T, m *RGB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, m.Image()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFloats(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestTransformMatchesTorchvision runs torchvision's Resize((S,S)) +
// CenterCrop(C) + ToTensor + Normalize on the same PNG for several shapes
// (shrinking, enlarging, one side only) and compares every value. The resize is
// Pillow's algorithm in integer arithmetic, so the stated tolerance is exact
// float32 equality up to 1e-6 (the division order of Normalize).
func TestTransformMatchesTorchvision(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		w, h, size, crop int
		mean, std        [3]float32
	}{
		{500, 375, 356, 299, HalfMeanStd[0], HalfMeanStd[1]},
		{200, 333, 356, 299, HalfMeanStd[0], HalfMeanStd[1]},
		{640, 480, 96, 75, ImageNetMeanStd[0], ImageNetMeanStd[1]},
		{356, 120, 356, 299, HalfMeanStd[0], HalfMeanStd[1]},
		{128, 128, 128, 0, HalfMeanStd[0], HalfMeanStd[1]},
		// Portrait shrinks: Pillow runs the vertical pass first when the height
		// shrinks by more than twice the width (21 > 2 x 10 here, 20 is not).
		{374, 500, 356, 299, HalfMeanStd[0], HalfMeanStd[1]},
		{100, 121, 111, 0, ImageNetMeanStd[0], ImageNetMeanStd[1]},
		{110, 130, 100, 0, ImageNetMeanStd[0], ImageNetMeanStd[1]},
		{110, 120, 100, 0, ImageNetMeanStd[0], ImageNetMeanStd[1]},
		{90, 400, 80, 75, HalfMeanStd[0], HalfMeanStd[1]},
	}
	var script strings.Builder
	script.WriteString("import sys, numpy as np, torchvision.transforms as T\nfrom PIL import Image\n")
	for i, c := range cases {
		m := testPicture(c.w, c.h, uint64(i))
		p := filepath.Join(dir, fmt.Sprintf("in%d.png", i))
		writePNG(t, m, p)
		crop := "T.Lambda(lambda x: x)"
		if c.crop > 0 {
			crop = fmt.Sprintf("T.CenterCrop(%d)", c.crop)
		}
		fmt.Fprintf(
			&script,
			"tf = T.Compose([T.Resize((%d, %d)), %s, T.ToTensor(), T.Normalize(%v, %v)])\n",
			c.size,
			c.size,
			crop,
			pyList(c.mean),
			pyList(c.std),
		)
		fmt.Fprintf(&script, "tf(Image.open(%q).convert('RGB')).numpy().astype('<f4').tofile(%q)\n", p, p+".ref")
	}
	testutil.RunPython(t, script.String())
	for i, c := range cases {
		m, err := DecodeImage(filepath.Join(dir, fmt.Sprintf("in%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		tf := Transform{Size: c.size, Crop: c.crop, Mean: c.mean, Std: c.std}
		side := tf.OutSide()
		got := make([]float32, 3*side*side)
		if err := tf.Apply(m, nil, got); err != nil {
			t.Fatal(err)
		}
		want := readFloats(t, filepath.Join(dir, fmt.Sprintf("in%d.png.ref", i)))
		if len(got) != len(want) {
			t.Fatalf("case %d: %d values, torchvision gave %d", i, len(got), len(want))
		}
		maxd, off := 0.0, 0
		for j := range got {
			d := math.Abs(float64(got[j] - want[j]))
			if d > maxd {
				maxd = d
			}
			if d > 1e-6 {
				off++
			}
		}
		t.Logf("case %d (%dx%d -> %d, crop %d): max |go - torchvision| = %.3g", i, c.w, c.h, c.size, c.crop, maxd)
		if off > 0 {
			t.Errorf("case %d: %d of %d values differ by more than 1e-6 (max %.3g)", i, off, len(got), maxd)
		}
	}
}

func pyList(v [3]float32) string { return fmt.Sprintf("[%v, %v, %v]", v[0], v[1], v[2]) }

func TestResizeIdentityAndCrop(t *testing.T) {
	m := testPicture(20, 10, 1)
	same := m.Resize(20, 10)
	if string(same.Pix) != string(m.Pix) {
		t.Error("resizing to the same size changed pixels")
	}
	c, err := m.Crop(3, 2, 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	if c.At(0, 0) != m.At(3, 2) || c.At(4, 3) != m.At(7, 5) {
		t.Error("crop picked the wrong pixels")
	}
	if _, err := m.Crop(18, 0, 5, 4); err == nil {
		t.Error("a crop past the edge gave no error")
	}
	if got := CenterOffset(356, 299); got != 28 {
		t.Errorf("CenterOffset(356, 299) = %d, want 28 (Python rounds 28.5 to even)", got)
	}
}

func TestDecodeBadImages(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.png")
	writePNG(t, testPicture(16, 16, 3), good)
	b, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.png")
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	junk := filepath.Join(dir, "junk.jpg")
	os.WriteFile(junk, []byte("this is not a picture"), 0o644)
	jpg := testutil.SharedData(t, "flickr8k-mini/Images/1000268201_693b08cb0e.jpg")
	jb, _ := os.ReadFile(jpg)
	tjpg := filepath.Join(dir, "trunc.jpg")
	os.WriteFile(tjpg, jb[:len(jb)/3], 0o644)
	for _, c := range []struct{ path, want string }{
		{trunc, "corrupt or truncated png"},
		{junk, "not a JPEG or PNG"},
		{tjpg, "corrupt or truncated jpeg"},
		{filepath.Join(dir, "absent.jpg"), "does not exist"},
	} {
		_, err := DecodeImage(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("DecodeImage(%s) = %v, want an error naming the file and %q", filepath.Base(c.path), err, c.want)
		}
	}
}
