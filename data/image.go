package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // decoders
	_ "image/png"
	"math"
	"os"
)

// RGB is an 8-bit RGB image, row-major, 3 bytes a pixel (as PIL's "RGB" mode).
type RGB struct {
	W, H int
	Pix  []uint8
}

// DecodeImage reads a JPEG or PNG file into RGB. A missing, truncated or
// corrupt file is an error that names it.
func DecodeImage(path string) (*RGB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, notExist(err))
	}
	img, format, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return nil, fmt.Errorf("image %s: not a JPEG or PNG file", path)
		}
		return nil, fmt.Errorf("image %s: corrupt or truncated %s: %v", path, format, err)
	}
	return ToRGB(img), nil
}

// ToRGB converts any image to RGB as PIL's convert("RGB") does for the common
// cases: YCbCr and gray expand, alpha is dropped without premultiplying.
func ToRGB(img image.Image) *RGB {
	r := img.Bounds()
	out := &RGB{W: r.Dx(), H: r.Dy(), Pix: make([]uint8, 3*r.Dx()*r.Dy())}
	switch m := img.(type) {
	case *image.NRGBA:
		for y := 0; y < out.H; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < out.W; x++ {
				copy(out.Pix[3*(y*out.W+x):], row[4*x:4*x+3])
			}
		}
		return out
	case *image.Gray:
		for y := 0; y < out.H; y++ {
			for x := 0; x < out.W; x++ {
				v := m.Pix[y*m.Stride+x]
				i := 3 * (y*out.W + x)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = v, v, v
			}
		}
		return out
	}
	nrgba := image.NewNRGBA(image.Rect(0, 0, out.W, out.H))
	draw.Draw(nrgba, nrgba.Rect, img, r.Min, draw.Src)
	return ToRGB(nrgba)
}

// Image returns the picture as an image.NRGBA (for PNG output).
func (m *RGB) Image() *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, m.W, m.H))
	for i := 0; i < m.W*m.H; i++ {
		out.Pix[4*i], out.Pix[4*i+1], out.Pix[4*i+2], out.Pix[4*i+3] = m.Pix[3*i], m.Pix[3*i+1], m.Pix[3*i+2], 255
	}
	return out
}

// At returns the colour at (x, y).
func (m *RGB) At(x, y int) color.NRGBA {
	i := 3 * (y*m.W + x)
	return color.NRGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], 255}
}

// The resize below is PIL's (Pillow's Resample.c, the path torchvision's
// Resize takes for PIL images): a separable convolution whose bilinear
// (triangle) kernel widens by the scale factor when shrinking, coefficients in
// 22-bit fixed point, horizontal pass first with the intermediate rounded and
// clipped to 8 bits. Done the same way, the bytes come out the same.

const precisionBits = 32 - 8 - 2

func bilinear(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// coeffs returns, per output pixel, the first input index, the count, and the
// fixed-point weights (precompute_coeffs + normalize_coeffs_8bpc).
func coeffs(inSize, outSize int) (bounds []int, kk []int32, ksize int) {
	scale := float64(inSize) / float64(outSize)
	filterscale := math.Max(scale, 1)
	support := 1.0 * filterscale
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	w := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1.0 / filterscale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = bilinear((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		for x := 0; x < ksize; x++ {
			v := 0.0
			if x < xmax && ww != 0 {
				v = w[x] / ww
			}
			if v < 0 {
				kk[xx*ksize+x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				kk[xx*ksize+x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		bounds[2*xx], bounds[2*xx+1] = xmin, xmax
	}
	return bounds, kk, ksize
}

func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resize scales to w x h with PIL's bilinear filter (antialiased when shrinking).
func (m *RGB) Resize(w, h int) *RGB {
	if w == m.W && h == m.H {
		return &RGB{W: w, H: h, Pix: append([]uint8(nil), m.Pix...)}
	}
	src := m
	bv, kv, ksv := coeffs(m.H, h)
	if w != m.W {
		// Horizontal pass over the rows the vertical pass will read.
		first := bv[0]
		last := bv[2*h-2] + bv[2*h-1]
		if h == m.H {
			first, last = 0, m.H
		}
		bh, kh, ksh := coeffs(m.W, w)
		tmp := &RGB{W: w, H: last - first, Pix: make([]uint8, 3*w*(last-first))}
		for y := 0; y < tmp.H; y++ {
			in := m.Pix[3*m.W*(y+first):]
			out := tmp.Pix[3*w*y:]
			for xx := 0; xx < w; xx++ {
				xmin, xmax := bh[2*xx], bh[2*xx+1]
				k := kh[xx*ksh:]
				for c := 0; c < 3; c++ {
					ss := int32(1 << (precisionBits - 1))
					for x := 0; x < xmax; x++ {
						ss += int32(in[3*(x+xmin)+c]) * k[x]
					}
					out[3*xx+c] = clip8(ss)
				}
			}
		}
		if h == m.H {
			return tmp
		}
		for i := 0; i < h; i++ {
			bv[2*i] -= first
		}
		src = tmp
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for yy := 0; yy < h; yy++ {
		ymin, ymax := bv[2*yy], bv[2*yy+1]
		k := kv[yy*ksv:]
		o := out.Pix[3*w*yy:]
		for xx := 0; xx < 3*w; xx++ {
			ss := int32(1 << (precisionBits - 1))
			for y := 0; y < ymax; y++ {
				ss += int32(src.Pix[3*w*(y+ymin)+xx]) * k[y]
			}
			o[xx] = clip8(ss)
		}
	}
	return out
}

// Crop returns the w x h window whose top-left corner is (x, y).
func (m *RGB) Crop(x, y, w, h int) (*RGB, error) {
	if x < 0 || y < 0 || x+w > m.W || y+h > m.H || w <= 0 || h <= 0 {
		return nil, fmt.Errorf("crop %dx%d at (%d,%d) does not fit a %dx%d image", w, h, x, y, m.W, m.H)
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for r := 0; r < h; r++ {
		copy(out.Pix[3*w*r:3*w*(r+1)], m.Pix[3*(m.W*(y+r)+x):])
	}
	return out, nil
}

// CenterOffset is torchvision's CenterCrop offset: int(round((in - out) / 2)),
// with Python's round-half-to-even.
func CenterOffset(in, out int) int { return int(math.RoundToEven(float64(in-out) / 2)) }

// Normalize writes the picture as float32 CHW into dst: (v/255 - mean) / std
// per channel, in float32 as torchvision's ToTensor + Normalize compute it.
func (m *RGB) Normalize(dst []float32, mean, std [3]float32) {
	n := m.W * m.H
	for c := 0; c < 3; c++ {
		mu, sd := mean[c], std[c]
		for i := 0; i < n; i++ {
			v := float32(m.Pix[3*i+c]) / 255
			dst[c*n+i] = (v - mu) / sd
		}
	}
}
