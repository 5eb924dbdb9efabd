package main

import (
	"flag"
	"os"

	"golang.org/x/term"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train"
)

func init() {
	register("train", command{
		summary: "train one experiment (TOML) into runs/<name>/",
		usage:   "[-config experiments/shapes.toml] [-set key=value ...]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String(
				"config",
				"experiments/shapes.toml",
				"experiment file (TOML); \"\" for the built-in defaults",
			)
			var sets multiFlag
			fs.Var(&sets, "set", "override one config key, key=value (repeatable), e.g. -set epochs=3 -set lr=1e-3")
			return func([]string) error {
				cfg, err := train.LoadConfig(*config, sets)
				if err != nil {
					return err
				}
				return torch.Run(func() error {
					_, err := train.Run(cfg, train.Options{Out: os.Stdout, TTY: term.IsTerminal(int(os.Stdout.Fd()))})
					return err
				})
			}
		},
	})
}
