package main

import (
	"flag"
	"os"
	"os/signal"
	"syscall"

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
				// SIGTERM (Slurm's time limit, kill) and Ctrl-C checkpoint the run and end it.
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
				defer signal.Stop(sig)
				return torch.Run(func() error {
					tty := term.IsTerminal(int(os.Stdout.Fd()))
					_, err := train.Run(cfg, train.Options{Out: os.Stdout, TTY: tty, Interrupt: sig})
					return err
				})
			}
		},
	})
}
