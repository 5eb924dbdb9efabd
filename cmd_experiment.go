package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/captiongo/captiongo/sweep"
)

func init() {
	register("experiment", command{
		summary: "run a sweep file: one training run per grid point, here or on Slurm",
		usage: "[-j 1] [-backend local|slurm] [-partition P -time HH:MM:SS -gpus-per-task N ...] [-dry-run] [-status] " +
			"SWEEP.toml",
		setup: func(fs *flag.FlagSet) func([]string) error {
			jobs := fs.Int("j", 1, "local backend: points run in parallel (one process each)")
			backend := fs.String(
				"backend",
				"local",
				"local (processes on this machine) or slurm (one job array, a task per point)",
			)
			status := fs.Bool(
				"status",
				false,
				"print each point's state and best metric instead of running (with -backend slurm: Slurm's state too)",
			)
			dryRun := fs.Bool("dry-run", false, "slurm: print the sbatch script instead of submitting it")
			setSlurm := slurmFlags(fs, "point")
			concurrency := fs.Int("array-concurrency", 0, "slurm: at most N points at once (--array=...%N)")
			return func(args []string) error {
				if len(args) != 1 {
					return errors.New("give one sweep file, e.g. experiments/sweep_shapes.toml")
				}
				sw, err := sweep.LoadSweep(args[0])
				if err != nil {
					return err
				}
				switch *backend {
				case "local":
					if *status {
						root, err := sw.OutRoot()
						if err != nil {
							return err
						}
						sw.PrintTable(root, os.Stdout)
						return nil
					}
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					return sw.RunLocal(exe, *jobs, os.Stdout)
				case "slurm":
					if *status {
						return sw.PrintSlurmTable(os.Stdout)
					}
					opts := sw.Slurm // the sweep file's [slurm] table, then the flags given
					setSlurm(&opts)
					fs.Visit(func(f *flag.Flag) {
						if f.Name == "array-concurrency" {
							opts.Concurrency = *concurrency
						}
					})
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					return sw.SubmitSlurm(opts, exe, *dryRun, os.Stdout)
				}
				return fmt.Errorf("-backend %q: use local or slurm", *backend)
			}
		},
	})
}
