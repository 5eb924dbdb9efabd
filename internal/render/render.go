// Package render draws the pictures training and captioning write: captioned
// samples, attention panels and attribution heat maps, as PNG.
package render

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/captiongo/captiongo/data"
)

// CaptionedPNG draws an image (scaled to 256 px wide) with the caption written
// under it, and returns the PNG with its size.
func CaptionedPNG(path, caption string) ([]byte, int, int, error) {
	img, err := data.DecodeImage(path)
	if err != nil {
		return nil, 0, 0, err
	}
	const W = 256
	h := img.H * W / img.W
	if h < 1 {
		h = 1
	}
	img = img.Resize(W, h)
	lines := wrap(caption, W/7-2)
	band := 8 + 15*len(lines)
	out := image.NewNRGBA(image.Rect(0, 0, W, h+band))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	draw.Draw(out, image.Rect(0, 0, W, h), img.Image(), image.Point{}, draw.Src)
	d := &font.Drawer{Dst: out, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13}
	for i, l := range lines {
		d.Dot = fixed.P(4, h+16+15*i)
		d.DrawString(l)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, out); err != nil {
		return nil, 0, 0, err
	}
	return b.Bytes(), W, h + band, nil
}

func wrap(s string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = w
			continue
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" || len(lines) == 0 {
		lines = append(lines, cur)
	}
	return lines
}

// AttentionPNG draws one panel per word: the picture (128 px) darkened where
// the word's attention weight is low, the g x g weights bilinearly upsampled
// over it (g*g = len(weights[i])), and the word under it. Six panels a row.
func AttentionPNG(path string, words []string, weights [][]float32) ([]byte, int, int, error) {
	img, err := data.DecodeImage(path)
	if err != nil {
		return nil, 0, 0, err
	}
	const S, band, perRow = 128, 18, 6
	pic := img.Resize(S, S)
	n := min(len(words), len(weights))
	if n == 0 {
		return nil, 0, 0, fmt.Errorf("attention map of %s: no words", path)
	}
	cols := min(n, perRow)
	rows := (n + perRow - 1) / perRow
	out := image.NewNRGBA(image.Rect(0, 0, cols*S, rows*(S+band)))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	d := &font.Drawer{Dst: out, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13}
	for i := 0; i < n; i++ {
		ox, oy := (i%perRow)*S, (i/perRow)*(S+band)
		heat := Upsample(weights[i], S)
		for y := 0; y < S; y++ {
			for x := 0; x < S; x++ {
				k := 3 * (y*S + x)
				a := 0.2 + 0.8*heat[y*S+x]
				r, g, b := float64(pic.Pix[k]), float64(pic.Pix[k+1]), float64(pic.Pix[k+2])
				// Attended places keep their colour and get a warm tint; the rest fades.
				out.SetNRGBA(ox+x, oy+y, color.NRGBA{
					R: uint8(math.Min(255, r*a+60*heat[y*S+x])), G: uint8(g * a), B: uint8(b * a), A: 255})
			}
		}
		d.Dot = fixed.P(ox+4, oy+S+13)
		d.DrawString(words[i])
	}
	var b bytes.Buffer
	if err := png.Encode(&b, out); err != nil {
		return nil, 0, 0, err
	}
	return b.Bytes(), cols * S, rows * (S + band), nil
}

// Upsample turns g x g weights (row-major, g*g = len(w)) into a side x side
// map, bilinear between cell centres, scaled so that its maximum is 1.
func Upsample(w []float32, side int) []float64 {
	g := int(math.Round(math.Sqrt(float64(len(w)))))
	out := make([]float64, side*side)
	if g*g != len(w) || g == 0 {
		return out
	}
	at := func(y, x int) float64 {
		y, x = max(0, min(g-1, y)), max(0, min(g-1, x))
		return float64(w[y*g+x])
	}
	hi := 0.0
	for y := 0; y < side; y++ {
		fy := (float64(y)+0.5)*float64(g)/float64(side) - 0.5
		y0 := int(math.Floor(fy))
		ty := fy - float64(y0)
		for x := 0; x < side; x++ {
			fx := (float64(x)+0.5)*float64(g)/float64(side) - 0.5
			x0 := int(math.Floor(fx))
			tx := fx - float64(x0)
			v := (1-ty)*((1-tx)*at(y0, x0)+tx*at(y0, x0+1)) + ty*((1-tx)*at(y0+1, x0)+tx*at(y0+1, x0+1))
			out[y*side+x] = v
			hi = math.Max(hi, v)
		}
	}
	if hi > 0 {
		for i := range out {
			out[i] /= hi
		}
	}
	return out
}

// HeatPNG draws a picture at side x side with a per-pixel heat map (any
// non-negative scale; shown relative to its maximum) over it and a label under it.
func HeatPNG(path string, side int, heat []float64, label string) ([]byte, error) {
	img, err := data.DecodeImage(path)
	if err != nil {
		return nil, err
	}
	pic := img.Resize(side, side)
	hi := 0.0
	for _, v := range heat {
		hi = math.Max(hi, v)
	}
	const band = 18
	out := image.NewNRGBA(image.Rect(0, 0, side, side+band))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			k := 3 * (y*side + x)
			h := 0.0
			if hi > 0 {
				h = math.Sqrt(heat[y*side+x] / hi) // sqrt: single pixels dominate raw gradients
			}
			a := 0.25 + 0.75*h
			r, g, b := float64(pic.Pix[k]), float64(pic.Pix[k+1]), float64(pic.Pix[k+2])
			out.SetNRGBA(x, y, color.NRGBA{R: uint8(math.Min(255, r*a+90*h)), G: uint8(g * a), B: uint8(b * a), A: 255})
		}
	}
	d := &font.Drawer{Dst: out, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13}
	d.Dot = fixed.P(4, side+13)
	d.DrawString(label)
	var b bytes.Buffer
	if err := png.Encode(&b, out); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
