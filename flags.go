package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/sweep"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// deviceFlag is the -device flag of the commands that run a model: a
// torch.DeviceName, checked when parsed.
func deviceFlag(fs *flag.FlagSet) *torch.DeviceName {
	d := torch.DeviceAuto
	names := make([]string, len(torch.DeviceNames))
	for i, n := range torch.DeviceNames {
		names[i] = string(n)
	}
	fs.Func("device", strings.Join(names, ", ")+" (default auto)", func(s string) error {
		if !slices.Contains(torch.DeviceNames, torch.DeviceName(s)) {
			return fmt.Errorf("want %s", strings.Join(names, ", "))
		}
		d = torch.DeviceName(s)
		return nil
	})
	return &d
}

// slurmFlags registers the sbatch options' flags (-partition, -time,
// -ntasks, ...) on fs. The returned function copies those given on the
// command line onto o, over what o holds (a sweep file's [slurm] table).
func slurmFlags(fs *flag.FlagSet, what string) func(o *sweep.SlurmOptions) {
	var f sweep.SlurmOptions
	var extra, setup multiFlag
	fs.StringVar(&f.Partition, "partition", "", "slurm: partition")
	fs.StringVar(&f.Account, "account", "", "slurm: account")
	fs.StringVar(&f.Time, "time", "", "slurm: time limit per "+what+", minutes, HH:MM:SS or D-HH:MM:SS")
	fs.IntVar(&f.GPUsPerTask, "gpus-per-task", 0, "slurm: GPUs per task (per rank with -ntasks)")
	fs.IntVar(&f.NTasks, "ntasks", 0, "slurm: each "+what+" one data-parallel run of N ranks (srun starts them)")
	fs.IntVar(&f.Nodes, "nodes", 0, "slurm: nodes per "+what+" with -ntasks (0: Slurm's choice)")
	fs.IntVar(&f.CPUsPerTask, "cpus-per-task", 0, "slurm: CPUs per task (also libtorch's threads unless set)")
	fs.StringVar(&f.Mem, "mem", "", "slurm: memory per "+what+", e.g. 16G")
	fs.Var(&extra, "sbatch", "slurm: one more sbatch option, e.g. -sbatch --qos=short (repeatable)")
	fs.Var(&setup, "setup", "slurm: a shell line run first, e.g. -setup 'module load cuda' (repeatable)")
	fs.StringVar(&f.Executable, "executable", "", "slurm: captiongo binary the tasks run (default: this one)")
	return func(o *sweep.SlurmOptions) {
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "partition":
				o.Partition = f.Partition
			case "account":
				o.Account = f.Account
			case "time":
				o.Time = f.Time
			case "gpus-per-task":
				o.GPUsPerTask = f.GPUsPerTask
			case "ntasks":
				o.NTasks = f.NTasks
			case "nodes":
				o.Nodes = f.Nodes
			case "cpus-per-task":
				o.CPUsPerTask = f.CPUsPerTask
			case "mem":
				o.Mem = f.Mem
			case "sbatch":
				o.Extra = append(o.Extra, extra...)
			case "setup":
				o.Setup = append(o.Setup, setup...)
			case "executable":
				o.Executable = f.Executable
			}
		})
	}
}
