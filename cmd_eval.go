package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/captiongo/captiongo/infer"
	"github.com/captiongo/captiongo/internal/torch"
)

func init() {
	register("eval", command{
		summary: "decode a split and report BLEU-1..4, CIDEr-D (and METEOR with Java)",
		usage:   "-checkpoint C -data DIR [-split test] [-beam 1]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			dataDir := fs.String("data", "", "data set folder (default: the run's own data)")
			split := fs.String("split", "test", "split to decode")
			beam := fs.Int("beam", 1, "beam size (1 = greedy)")
			maxLen := fs.Int("max-len", 50, "longest caption in tokens")
			out := fs.String("out", "", "COCO results file to write (default: <run>/results_<split>.json)")
			device := deviceFlag(fs)
			return func([]string) error {
				if *ckpt == "" {
					return errors.New("-checkpoint is required")
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					res := *out
					if res == "" {
						res = filepath.Join(m.Dir, "results_"+*split+".json")
					}
					jar := meteorJar()
					r, err := m.Evaluate(*dataDir, *split, *beam, *maxLen, res, jar)
					if err != nil {
						return err
					}
					b, _ := json.Marshal(r)
					fmt.Println(string(b))
					return nil
				})
			}
		},
	})
}
