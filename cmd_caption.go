package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/infer"
	"github.com/captiongo/captiongo/internal/torch"
)

func init() {
	register("caption", command{
		summary: "caption image files or a folder with a trained checkpoint",
		usage:   "-checkpoint RUN_OR_FILE [-beam 1] [-json] IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			beam := fs.Int("beam", 1, "beam size (1 = greedy)")
			asJSON := fs.Bool("json", false, "print JSON lines with file, caption, log-probability")
			maxLen := fs.Int("max-len", 50, "longest caption in tokens")
			device := deviceFlag(fs)
			attDir := fs.String(
				"attention",
				"",
				"attention runs: write each image's per-word attention maps as DIR/<image>.attention.png",
			)
			return func(args []string) error {
				if *ckpt == "" {
					return errors.New("-checkpoint is required")
				}
				files, err := infer.ImageFiles(args)
				if err != nil {
					return err
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					caps := m.CaptionFiles(files, *beam, *maxLen, 32)
					bad := infer.WriteCaptions(os.Stdout, os.Stderr, caps, *asJSON)
					if *attDir != "" {
						if err := os.MkdirAll(*attDir, 0o755); err != nil {
							return err
						}
						for _, c := range caps {
							if c.Err != "" || c.Caption == "" {
								continue
							}
							png, err := m.AttentionPNG(c.File, c.Caption)
							if err != nil {
								return err
							}
							base := strings.TrimSuffix(filepath.Base(c.File), filepath.Ext(c.File))
							if err := data.WriteFileAtomic(filepath.Join(*attDir, base+".attention.png"), png); err != nil {
								return err
							}
						}
					}
					if bad > 0 {
						return fmt.Errorf("%d of %d image(s) could not be read", bad, len(files))
					}
					return nil
				})
			}
		},
	})
}
