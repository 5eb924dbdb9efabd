// Package launch starts the ranks of a data-parallel run as processes on this
// host, as torchrun --nproc_per_node does: each gets RANK, LOCAL_RANK,
// WORLD_SIZE, MASTER_ADDR (127.0.0.1) and MASTER_PORT in its environment.
// `captiongo train -nproc`, the ddp bench and the tests' ranks start them here.
package launch

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// Spec says what to start.
type Spec struct {
	Exe  string
	Args []string
	N    int      // ranks
	Port int      // MASTER_PORT
	Env  []string // more variables, for every rank (after os.Environ)
	// Stdout and Stderr give each rank's writers (nil: discarded; a nil
	// Stderr: Stdout's).
	Stdout, Stderr func(rank int) io.Writer
	// StopOnFailure sends SIGTERM to the ranks still running once one has
	// failed (torchrun's behaviour; a trainer checkpoints on it).
	StopOnFailure bool
	// Signals are passed on to every rank still running.
	Signals <-chan os.Signal
}

// Run starts the ranks and waits for all of them. It returns each rank's
// exit error and the rank that failed first (-1 if none did); err is set
// when a rank could not be started (those started are killed).
func Run(s Spec) (errs []error, first int, err error) {
	type exit struct {
		rank int
		err  error
	}
	done := make(chan exit, s.N)
	cmds := make([]*exec.Cmd, s.N)
	for r := range cmds {
		c := exec.Command(s.Exe, s.Args...)
		c.Env = append(append(os.Environ(), "RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r),
			"WORLD_SIZE="+strconv.Itoa(s.N), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(s.Port)), s.Env...)
		if s.Stdout != nil {
			c.Stdout = s.Stdout(r)
		}
		c.Stderr = c.Stdout
		if s.Stderr != nil {
			c.Stderr = s.Stderr(r)
		}
		if err := c.Start(); err != nil {
			for _, p := range cmds[:r] {
				p.Process.Kill()
				p.Wait()
			}
			return nil, -1, fmt.Errorf("starting rank %d: %w", r, err)
		}
		cmds[r] = c
		go func(r int) { done <- exit{r, c.Wait()} }(r)
	}
	running := make([]bool, s.N)
	for r := range running {
		running[r] = true
	}
	stop := func(sig os.Signal) {
		for r, c := range cmds {
			if running[r] {
				c.Process.Signal(sig) // one that has just ended answers an error, ignored
			}
		}
	}
	errs, first = make([]error, s.N), -1
	for left := s.N; left > 0; {
		select {
		case sig := <-s.Signals:
			stop(sig)
		case e := <-done:
			left--
			running[e.rank] = false
			errs[e.rank] = e.err
			if e.err != nil && first < 0 {
				first = e.rank
				if s.StopOnFailure {
					stop(syscall.SIGTERM)
				}
			}
		}
	}
	return errs, first, nil
}
