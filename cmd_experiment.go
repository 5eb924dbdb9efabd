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
			var o sweep.SlurmOptions
			var extra, setupLines multiFlag
			fs.StringVar(&o.Partition, "partition", "", "slurm: partition (overrides [slurm] partition)")
			fs.StringVar(&o.Account, "account", "", "slurm: account")
			fs.StringVar(&o.Time, "time", "", "slurm: time limit per point, HH:MM:SS or D-HH:MM:SS")
			fs.IntVar(&o.GPUsPerTask, "gpus-per-task", 0, "slurm: GPUs per task (per rank with -ntasks)")
			fs.IntVar(&o.NTasks, "ntasks", 0, "slurm: each point one data-parallel run of N ranks (srun starts them)")
			fs.IntVar(&o.Nodes, "nodes", 0, "slurm: nodes per point with -ntasks (0: Slurm's choice)")
			fs.IntVar(
				&o.CPUsPerTask,
				"cpus-per-task",
				0,
				"slurm: CPUs per point (also libtorch's threads unless the sweep sets threads)",
			)
			fs.StringVar(&o.Mem, "mem", "", "slurm: memory per point, e.g. 16G")
			fs.IntVar(&o.Concurrency, "array-concurrency", 0, "slurm: at most N points at once (--array=...%N)")
			fs.Var(&extra, "sbatch", "slurm: one more sbatch option, e.g. -sbatch --qos=short (repeatable)")
			fs.Var(
				&setupLines,
				"setup",
				"slurm: a shell line run before each point, e.g. -setup 'module load cuda' (repeatable)",
			)
			fs.StringVar(&o.Executable, "executable", "", "slurm: captiongo binary the tasks run (default: this one)")
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
					fs.Visit(func(f *flag.Flag) {
						switch f.Name {
						case "partition":
							opts.Partition = o.Partition
						case "account":
							opts.Account = o.Account
						case "time":
							opts.Time = o.Time
						case "gpus-per-task":
							opts.GPUsPerTask = o.GPUsPerTask
						case "ntasks":
							opts.NTasks = o.NTasks
						case "nodes":
							opts.Nodes = o.Nodes
						case "cpus-per-task":
							opts.CPUsPerTask = o.CPUsPerTask
						case "mem":
							opts.Mem = o.Mem
						case "array-concurrency":
							opts.Concurrency = o.Concurrency
						case "sbatch":
							opts.Extra = append(opts.Extra, extra...)
						case "setup":
							opts.Setup = append(opts.Setup, setupLines...)
						case "executable":
							opts.Executable = o.Executable
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
