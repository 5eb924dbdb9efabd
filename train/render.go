package train

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
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
