package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	_ "image/png" // registers PNG with image.Decode
	"math"
	"os"
)

// RGB is an 8-bit RGB image, row-major, 3 bytes a pixel (as PIL's "RGB" mode).
type RGB struct {
	W, H int
	Pix  []uint8
}

// MaxPixels is the largest picture DecodeImage accepts: twice PIL's
// Image.MAX_IMAGE_PIXELS, where PIL raises DecompressionBombError.
const MaxPixels = 2 * 89478485

// DecodeImage reads a JPEG or PNG file into RGB, choosing the decoder by the
// file's first bytes as PIL does (a PNG named .jpg is read as the PNG it is).
// JPEGs go through JPEGDecoder, which gives PIL's pixels exactly when built
// with libjpeg-turbo. A missing, empty, truncated, corrupt or oversized file is
// an error that names it.
func DecodeImage(path string) (*RGB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, notExist(err))
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("image %s: empty file (0 bytes)", path)
	}
	if isJPEG(b) {
		return decodeJPEG(path, b)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err == nil {
		if err := checkPixels(path, cfg.Width, cfg.Height); err != nil {
			return nil, err
		}
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

// DecodeImageGo is DecodeImage with Go's image/jpeg for JPEGs, whatever the
// build: what the nolibjpeg fallback gives, for comparisons and benchmarks.
func DecodeImageGo(path string) (*RGB, error) {
	b, err := os.ReadFile(path)
	if err == nil && isJPEG(b) {
		return decodeJPEGGo(path, b)
	}
	return DecodeImage(path)
}

// isJPEG reports whether b starts with a JPEG's SOI marker.
func isJPEG(b []byte) bool { return len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff }

func checkPixels(path string, w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("image %s: %dx%d pixels: empty picture", path, w, h)
	}
	if int64(w)*int64(h) > MaxPixels {
		return fmt.Errorf(
			"image %s: %dx%d pixels is over the limit of %d (PIL's decompression-bomb limit)",
			path,
			w,
			h,
			MaxPixels,
		)
	}
	return nil
}

// decodeJPEGGo is Go's image/jpeg decoder: the fallback when built with the
// nolibjpeg tag, and the comparison the tests and the loader benchmark make.
func decodeJPEGGo(path string, b []byte) (*RGB, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("image %s: corrupt or truncated jpeg: %v", path, err)
	}
	if err := checkPixels(path, cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("image %s: corrupt or truncated jpeg: %v", path, err)
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
	if m, ok := img.(*image.YCbCr); ok {
		for y := 0; y < out.H; y++ {
			for x := 0; x < out.W; x++ {
				yi, ci := m.YOffset(r.Min.X+x, r.Min.Y+y), m.COffset(r.Min.X+x, r.Min.Y+y)
				i := 3 * (y*out.W + x)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
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
	if uint32(v) > 255 { // rare: negative or over 255
		if v < 0 {
			return 0
		}
		return 255
	}
	return uint8(v)
}

// Resize scales to w x h with PIL's bilinear filter (antialiased when shrinking).
func (m *RGB) Resize(w, h int) *RGB { return m.ResizeCrop(w, h, 0, 0, w, h) }

// ResizeCrop returns the cw x ch window at (x0, y0) of the picture resized to
// w x h, computing only that window (each output pixel depends only on its own
// coefficients, so the bytes equal Resize followed by Crop). When a side keeps
// its size PIL skips that pass; its identity coefficients ([1, 0] in fixed
// point) give the same bytes, so both passes always run here.
//
// The pass order is Pillow's (13.0, ImagingResampleInner): horizontal first,
// unless the height shrinks by more than twice what the width does; the
// 8-bit rounding between the passes makes the order visible in the bytes.
// (Older Pillows, such as the 10.x torchvision 0.16 first shipped with, always
// ran the horizontal pass first: portrait photos then differ by one level in
// some pixels.)
func (m *RGB) ResizeCrop(w, h, x0, y0, cw, ch int) *RGB {
	bh, kh, ksh := coeffs(m.W, w)
	bv, kv, ksv := coeffs(m.H, h)
	res := &RGB{W: cw, H: ch, Pix: make([]uint8, 3*cw*ch)}
	if dh := m.H - h; dh > 0 && dh > 2*(m.W-w) {
		// Vertical first, over the input columns the window's horizontal pass reads.
		first := bh[2*x0]
		cols := bh[2*(x0+cw-1)] + bh[2*(x0+cw-1)+1] - first
		tmp := make([]uint8, 3*cols*ch)
		acc := make([]int32, 3*cols)
		src := func(y int) []uint8 { return m.Pix[3*(m.W*y+first) : 3*(m.W*y+first+cols)] }
		for oy := 0; oy < ch; oy++ {
			yy := oy + y0
			resampleCol(tmp[3*cols*oy:3*cols*(oy+1)], acc, src, bv[2*yy], kv[yy*ksv:yy*ksv+bv[2*yy+1]])
		}
		for y := 0; y < ch; y++ {
			resampleRow(res.Pix[3*cw*y:3*cw*(y+1)], tmp[3*cols*y:3*cols*(y+1)], x0, first, bh, kh, ksh)
		}
		return res
	}
	// Horizontal first, over the input rows the window's vertical pass reads.
	first := bv[2*y0]
	last := bv[2*(y0+ch-1)] + bv[2*(y0+ch-1)+1]
	rows := last - first
	tmp := make([]uint8, 3*cw*rows)
	for y := 0; y < rows; y++ {
		resampleRow(tmp[3*cw*y:3*cw*(y+1)], m.Pix[3*m.W*(y+first):3*m.W*(y+first+1)], x0, 0, bh, kh, ksh)
	}
	acc := make([]int32, 3*cw)
	src := func(y int) []uint8 { return tmp[3*cw*y : 3*cw*(y+1)] }
	for oy := 0; oy < ch; oy++ {
		yy := oy + y0
		resampleCol(res.Pix[3*cw*oy:3*cw*(oy+1)], acc, src, bv[2*yy]-first, kv[yy*ksv:yy*ksv+bv[2*yy+1]])
	}
	return res
}

const half = int32(1 << (precisionBits - 1)) // rounding of the fixed-point sums

// resampleRow is the horizontal pass of one row: out's pixels (output columns
// x0, x0+1, ...) from in, whose first pixel is input column base.
func resampleRow(out, in []uint8, x0, base int, bh []int, kh []int32, ksh int) {
	for ox := 0; ox < len(out)/3; ox++ {
		xx := ox + x0
		xmin, xmax := bh[2*xx]-base, bh[2*xx+1]
		px := in[3*xmin : 3*(xmin+xmax)]
		s0, s1, s2 := half, half, half
		for i, kk := range kh[xx*ksh : xx*ksh+xmax] {
			p := px[3*i : 3*i+3]
			s0 += int32(p[0]) * kk
			s1 += int32(p[1]) * kk
			s2 += int32(p[2]) * kk
		}
		o := out[3*ox : 3*ox+3]
		o[0], o[1], o[2] = clip8(s0), clip8(s1), clip8(s2)
	}
}

// resampleCol is the vertical pass of one output row: out = the weights k over
// the source rows row(ymin), row(ymin+1), ...; acc is scratch of out's length.
func resampleCol(out []uint8, acc []int32, row func(y int) []uint8, ymin int, k []int32) {
	for i := range acc {
		acc[i] = half
	}
	for j, kk := range k {
		for i, v := range row(ymin + j) {
			acc[i] += int32(v) * kk
		}
	}
	for i, a := range acc {
		out[i] = clip8(a)
	}
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
	// 256 values per channel, computed with the same float32 operations.
	var lut [3][256]float32
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			lut[c][v] = (float32(v)/255 - mean[c]) / std[c]
		}
	}
	n := m.W * m.H
	r, g, b := dst[:n], dst[n:2*n], dst[2*n:3*n]
	pix := m.Pix[:3*n]
	for i := range r {
		p := pix[3*i : 3*i+3]
		r[i], g[i], b[i] = lut[0][p[0]], lut[1][p[1]], lut[2][p[2]]
	}
}
