package data

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// Normalisations.
var (
	// HalfMeanStd is the baseline's Normalize((0.5,0.5,0.5), (0.5,0.5,0.5)).
	HalfMeanStd = [2][3]float32{{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}}
	// ImageNetMeanStd is torchvision's ImageNet normalisation.
	ImageNetMeanStd = [2][3]float32{{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}}
)

// Transform is the image pipeline: Resize((Size, Size)) with PIL's bilinear
// filter, then a Crop x Crop window (random when training, centred otherwise),
// then ToTensor + Normalize(Mean, Std). The baseline is Size 356, Crop 299,
// mean and std 0.5.
type Transform struct {
	Size      int // resize to Size x Size (0 keeps the image's own size)
	Crop      int // crop side (0 = no crop)
	Random    bool
	Mean, Std [3]float32
}

// BaselineTransform returns the baseline's training (random) or evaluation
// (centre-crop) transform.
func BaselineTransform(train bool) Transform {
	return Transform{Size: 356, Crop: 299, Random: train, Mean: HalfMeanStd[0], Std: HalfMeanStd[1]}
}

// Validate checks the sizes.
func (t Transform) Validate() error {
	if t.Size < 0 || t.Crop < 0 {
		return fmt.Errorf("image size %d and crop %d must not be negative", t.Size, t.Crop)
	}
	if t.Size > 0 && t.Crop > t.Size {
		return fmt.Errorf("crop %d is larger than the resized image %d", t.Crop, t.Size)
	}
	for c := 0; c < 3; c++ {
		if t.Std[c] <= 0 {
			return fmt.Errorf("std[%d] = %v must be positive", c, t.Std[c])
		}
	}
	return nil
}

// OutSide is the side of the square the transform produces (0 when it keeps
// the image's own size).
func (t Transform) OutSide() int {
	if t.Crop > 0 {
		return t.Crop
	}
	return t.Size
}

// Apply runs the pipeline; dst receives 3 x side x side float32 values. rng
// picks random crops (it may be nil when Random is false).
func (t Transform) Apply(img *RGB, rng *rand.Rand, dst []float32) error {
	w, h := img.W, img.H
	if t.Size > 0 {
		w, h = t.Size, t.Size
	}
	x, y, cw, ch := 0, 0, w, h
	if t.Crop > 0 {
		if t.Crop > w || t.Crop > h {
			return fmt.Errorf("crop %d does not fit a %dx%d image", t.Crop, w, h)
		}
		cw, ch = t.Crop, t.Crop
		x, y = CenterOffset(w, t.Crop), CenterOffset(h, t.Crop)
		if t.Random {
			x, y = rng.IntN(w-t.Crop+1), rng.IntN(h-t.Crop+1)
		}
	}
	if t.Size > 0 || t.Crop > 0 {
		// Resize and crop in one pass: only the kept window is computed.
		img = img.ResizeCrop(w, h, x, y, cw, ch)
	}
	if len(dst) != 3*img.W*img.H {
		return fmt.Errorf("transform: output holds %d values, the image needs %d", len(dst), 3*img.W*img.H)
	}
	img.Normalize(dst, t.Mean, t.Std)
	return nil
}

// Preprocess decodes the files and applies the transform to each (in order,
// on up to workers goroutines): N x 3 x side x side float32 values, the exact
// tensor the model is fed. Without a resize or crop every image must share
// one square size. A random crop is taken centred, as evaluation takes it.
func Preprocess(files []string, t Transform, workers int) ([]float32, int, error) {
	t.Random = false
	if len(files) == 0 {
		return nil, 0, fmt.Errorf("preprocess: no images given")
	}
	if err := t.Validate(); err != nil {
		return nil, 0, err
	}
	side := t.OutSide()
	imgs := make([]*RGB, len(files))
	if side == 0 {
		first, err := DecodeImage(files[0])
		if err != nil {
			return nil, 0, err
		}
		if first.W != first.H {
			return nil, 0, fmt.Errorf(
				"image %s: %dx%d is not square; give a resize (image_size) or a crop",
				files[0],
				first.W,
				first.H,
			)
		}
		side, imgs[0] = first.W, first
	}
	out := make([]float32, len(files)*3*side*side)
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < max(1, workers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				img := imgs[i]
				if img == nil {
					var err error
					if img, err = DecodeImage(files[i]); err != nil {
						errs[i] = err
						continue
					}
				}
				if t.OutSide() == 0 && (img.W != side || img.H != side) {
					errs[i] = fmt.Errorf(
						"image %s: %dx%d, but the first image is %dx%d and there is no resize or crop",
						files[i],
						img.W,
						img.H,
						side,
						side,
					)
					continue
				}
				if err := t.Apply(img, nil, out[i*3*side*side:(i+1)*3*side*side]); err != nil {
					errs[i] = fmt.Errorf("image %s: %w", files[i], err)
				}
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return out, side, nil
}
