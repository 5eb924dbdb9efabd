package main

import (
	"errors"
	"flag"
	"os"

	"github.com/captiongo/captiongo/infer"
	"github.com/captiongo/captiongo/internal/torch"
)

func init() {
	register("explain", command{
		summary: "attribute every generated word to the input pixels (Integrated Gradients, Saliency, Grad-CAM, occlusion)",
		usage: "-checkpoint C [-method ig|saliency|gradcam|occlusion] [-steps 32] [-baseline zero|black] [-out explain] " +
			"IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			method := fs.String(
				"method",
				"ig",
				"ig (Integrated Gradients), saliency, gradcam (on the map the decoder reads) or occlusion",
			)
			window := fs.Int("window", 0, "occlusion: window side in pixels (0: a ninth of the picture)")
			stride := fs.Int("stride", 0, "occlusion: step in pixels (0: half the window)")
			steps := fs.Int("steps", 32, "ig: Gauss-Legendre points of the path integral")
			baseline := fs.String("baseline", "zero", "ig: zero (the normalised mean grey, Captum's default) or black")
			beam := fs.Int("beam", 1, "beam size for the caption (1 = greedy)")
			out := fs.String("out", "explain", "folder for one PNG per word and an HTML page per image")
			device := deviceFlag(fs)
			return func(args []string) error {
				if *ckpt == "" || len(args) == 0 {
					return errors.New("give -checkpoint and at least one image")
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					for _, f := range args {
						if _, err := m.Explain(f, infer.ExplainOptions{Method: infer.Method(*method), Steps: *steps, Baseline: *baseline,
							Window: *window, Stride: *stride, Beam: *beam, MaxLen: 50, Out: *out}, os.Stdout); err != nil {
							return err
						}
					}
					return nil
				})
			}
		},
	})
}
