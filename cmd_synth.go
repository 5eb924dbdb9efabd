package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/captiongo/captiongo/data"
)

func init() {
	register("synth", command{
		summary: "write the synthetic shapes data set (Kaggle Flickr8k layout)",
		usage:   "-out DIR [-n 2000] [-seed 1]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			out := fs.String("out", "", "output folder (required)")
			n := fs.Int("n", 2000, "number of images")
			seed := fs.Uint64("seed", 1, "random seed")
			return func([]string) error {
				if *out == "" {
					return errors.New("-out DIR is required")
				}
				if err := data.WriteSynth(*out, *n, *seed); err != nil {
					return err
				}
				fmt.Printf(
					"wrote %d synthetic pictures with 5 captions each to %s (Kaggle Flickr8k layout + scenes.json)\n",
					*n,
					*out,
				)
				return nil
			}
		},
	})
}
