package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/launch"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/sweep"
	"github.com/captiongo/captiongo/train"
)

func init() {
	register("train", command{
		summary: "train one experiment (TOML) into runs/<name>/",
		usage: "[-config experiments/shapes.toml] [-set key=value ...] [-nproc N] " +
			"[-backend slurm -ntasks N -nodes M -gpus-per-task G -time T ... [-dry-run]]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String(
				"config",
				"experiments/shapes.toml",
				"experiment file (TOML); \"\" for the built-in defaults",
			)
			var sets multiFlag
			fs.Var(&sets, "set", "override one config key, key=value (repeatable), e.g. -set epochs=3 -set lr=1e-3")
			nproc := fs.Int("nproc", 1, "data-parallel training in N local processes (ranks), as torchrun "+
				"--nproc_per_node N; batch_size stays the global batch")
			// It covers rank 0 building a feature cache while the others wait. A
			// rank that dies is noticed at once (its connections close), not after it.
			distTimeout := fs.Duration("dist-timeout", 60*time.Minute, "data-parallel: how long a rank waits at the "+
				"rendezvous or in a collective (rank 0 building the feature cache included) before it gives up")
			backend := fs.String("backend", "local", "local (here) or slurm (one Slurm job; -ntasks N: N ranks)")
			dryRun := fs.Bool("dry-run", false, "slurm: print the sbatch script instead of submitting it")
			setSlurm := slurmFlags(fs, "run")
			return func([]string) error {
				cfg, err := train.LoadConfig(*config, sets)
				if err != nil {
					return err
				}
				if *distTimeout <= 0 {
					return fmt.Errorf("-dist-timeout %v: want a positive duration, e.g. 30m", *distTimeout)
				}
				switch *backend {
				case "local":
				case "slurm":
					var o sweep.SlurmOptions
					setSlurm(&o)
					if *nproc != 1 {
						return errors.New("-nproc starts ranks here; with -backend slurm give -ntasks (and -nodes)")
					}
					if o.NTasks > 1 {
						if err := checkWorld(cfg, o.NTasks, "-ntasks"); err != nil {
							return err
						}
					}
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					var extra []string
					fs.Visit(func(f *flag.Flag) {
						if f.Name == "dist-timeout" {
							extra = append(extra, "-dist-timeout", f.Value.String())
						}
					})
					return sweep.SubmitRun(*config, sets, extra, o, exe, *dryRun, os.Stdout)
				default:
					return fmt.Errorf("-backend %q: use local or slurm", *backend)
				}
				if *nproc < 1 {
					return fmt.Errorf("-nproc %d: want at least 1", *nproc)
				}
				if *nproc > 1 {
					if err := checkWorld(cfg, *nproc, "-nproc"); err != nil {
						return err
					}
					return launchRanks(*nproc)
				}
				var g *dist.Group
				env, ok, err := dist.FromEnv(os.Getenv)
				if err != nil {
					return err
				}
				if ok {
					if err := checkWorld(cfg, env.World, "the world size ("+env.From+")"); err != nil {
						return err
					}
					if g, err = dist.Join(env, *distTimeout); err != nil {
						return err
					}
					defer g.Close()
				}
				// SIGTERM (Slurm's time limit, kill) and Ctrl-C checkpoint the run and end it.
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
				defer signal.Stop(sig)
				return torch.Run(func() error {
					tty := term.IsTerminal(int(os.Stdout.Fd())) && (g == nil || g.Rank == 0)
					_, err := train.Run(cfg, train.Options{Out: os.Stdout, TTY: tty, Interrupt: sig, Dist: g})
					return err
				})
			}
		},
	})
}

// checkWorld refuses a world the batch cannot be split over, naming the setting.
func checkWorld(cfg train.Config, world int, what string) error {
	if world > cfg.BatchSize {
		return fmt.Errorf("%s %d is larger than batch_size %d: every rank needs a share of each batch", what, world,
			cfg.BatchSize)
	}
	if cfg.BatchSize%world != 0 {
		return fmt.Errorf("batch_size %d does not divide over %s %d: each rank takes an equal share", cfg.BatchSize,
			what, world)
	}
	return nil
}

// launchRanks starts n ranks of this same command (without -nproc) on this host,
// as torchrun does: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and a free
// MASTER_PORT in each one's environment. When one rank fails the others are
// stopped (SIGTERM: rank 0 checkpoints); signals to the launcher go to every
// rank. It returns the first failure.
func launchRanks(n int) error {
	var port int
	var err error
	if s := os.Getenv("MASTER_PORT"); s != "" {
		port, err = strconv.Atoi(s)
	} else {
		port, err = dist.FreePort()
	}
	if err != nil {
		return fmt.Errorf("-nproc: MASTER_PORT: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var args []string
	skip := false
	for _, a := range os.Args[1:] {
		switch {
		case skip:
			skip = false
		case a == "-nproc" || a == "--nproc":
			skip = true
		case strings.HasPrefix(a, "-nproc=") || strings.HasPrefix(a, "--nproc="):
		default:
			args = append(args, a)
		}
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	errs, first, err := launch.Run(launch.Spec{Exe: exe, Args: args, N: n, Port: port, StopOnFailure: true, Signals: sig,
		Stdout: func(int) io.Writer { return os.Stdout }, Stderr: func(int) io.Writer { return os.Stderr }})
	if err != nil {
		return fmt.Errorf("-nproc: %w", err)
	}
	if first >= 0 {
		var ee *exec.ExitError
		if errors.As(errs[first], &ee) {
			return rankExit{first, ee.ExitCode(), ee}
		}
		return fmt.Errorf("rank %d: %w", first, errs[first])
	}
	return nil
}

// rankExit is a rank's failure, with its exit code as the launcher's.
type rankExit struct {
	rank, code int
	err        error
}

func (e rankExit) Error() string {
	return fmt.Sprintf("rank %d failed (%v); the other ranks were stopped", e.rank, e.err)
}
func (e rankExit) ExitCode() int { return max(e.code, 1) }
