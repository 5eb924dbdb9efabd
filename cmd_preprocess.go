package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train"
)

func init() {
	register("preprocess", command{
		summary: "the exact float tensor the model is fed for given images (N x 3 x H x W .npy, in the order given)",
		usage:   "[-config experiments/x.toml] [-size 299 -crop 0 -normalize half] -out X.npy IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String(
				"config",
				"",
				"experiment whose evaluation transform to use (TOML); flags set below override it",
			)
			size := fs.Int("size", 356, "Resize((size, size)) with PIL's bilinear filter (0 keeps the image's size)")
			crop := fs.Int("crop", 299, "centre crop side after resizing (0 = none)")
			norm := fs.String("normalize", "half", "half (mean = std = 0.5, the baseline) or imagenet")
			out := fs.String("out", "", "output .npy (required)")
			workers := fs.Int("workers", 4, "images decoded at once")
			return func(files []string) error {
				if *out == "" || len(files) == 0 {
					return errors.New("-out and at least one image are required")
				}
				cfg := train.DefaultConfig()
				if *config != "" {
					var err error
					if cfg, err = train.LoadConfig(*config, nil); err != nil {
						return err
					}
				}
				fs.Visit(func(f *flag.Flag) {
					switch f.Name {
					case "size":
						cfg.ImageSize = *size
					case "crop":
						cfg.Crop = *crop
					case "normalize":
						cfg.Normalize = train.Norm(*norm)
					}
				})
				if !slices.Contains(train.Norms, cfg.Normalize) {
					return fmt.Errorf("-normalize %q: want half or imagenet", cfg.Normalize)
				}
				_, tf := cfg.Transforms()
				x, side, err := data.Preprocess(files, tf, *workers)
				if err != nil {
					return err
				}
				if err := torch.WriteNpy(*out, x, []int64{int64(len(files)), 3, int64(side), int64(side)}); err != nil {
					return err
				}
				fmt.Printf(
					"wrote %d x 3 x %d x %d to %s (resize %d, crop %d, normalize %s; JPEG decoder: %s)\n",
					len(files),
					side,
					side,
					*out,
					tf.Size,
					tf.Crop,
					cfg.Normalize,
					data.JPEGDecoder,
				)
				return nil
			}
		},
	})
}
