package main

import (
	"flag"
	"os"

	"github.com/captiongo/captiongo/bench"
	"github.com/captiongo/captiongo/internal/torch"
)

func init() {
	register("bench", command{
		summary: "benchmarks beside the PyTorch reference (JSON lines)",
		usage:   "[-case all]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			c := fs.String("case", "all", "benchmark case to run: all, loader, decode, train, epoch or ddp (data-parallel)")
			dataDir := fs.String(
				"data",
				"../shared/data/flickr8k-mini",
				"Kaggle-layout folder of real JPEGs for the loader case",
			)
			py := fs.String(
				"python",
				os.Getenv("CAPTIONGO_PYTHON"),
				"Python with torch 2.1.0 for the reference side (make bench passes .venv/bin/python)",
			)
			n := fs.Int("images", 1000, "images per loader run")
			workers := fs.Int("workers", 0, "decode workers on each side (0 = number of CPUs)")
			device := fs.String(
				"device",
				"cpu",
				"where the decode and train cases run on both sides: cpu or cuda (loader and epoch stay on the CPU)",
			)
			refAlloc := fs.String(
				"ref-alloc",
				"default",
				"the PyTorch side's memory allocator: default (glibc malloc) or jemalloc (LD_PRELOAD, as PyTorch's CPU tuning "+
					"guide recommends; CAPTIONGO_JEMALLOC names the library)",
			)
			return func([]string) error {
				return bench.Run(
					bench.Options{
						Case:     *c,
						Data:     *dataDir,
						Python:   *py,
						Images:   *n,
						Workers:  *workers,
						Device:   torch.DeviceName(*device),
						RefAlloc: *refAlloc,
					},
					os.Stdout,
				)
			}
		},
	})
}
