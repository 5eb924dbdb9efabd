package tensorboard

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func tinyPNG(t *testing.T) []byte {
	im := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	im.Set(0, 0, color.NRGBA{255, 0, 0, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
