package sweep

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/train"
)

// SubmitRun submits one training run to Slurm as one job: `captiongo train`
// with the experiment file, the -set overrides and trainArgs (other flags of
// train's), its ranks the job's tasks
// (srun starts them) when o.NTasks > 1. The job's script and Slurm's log of
// it (<job id>.out) go to the run folder's slurm/; the run writes its folder
// as a local run does. With dryRun it prints the script and writes nothing.
// A run folder that already holds a checkpoint needs resume = true, as it
// does locally.
func SubmitRun(config string, sets, trainArgs []string, o SlurmOptions, exe string, dryRun bool, out io.Writer) error {
	if err := o.Validate(); err != nil {
		var ce *train.ConfigError
		if errors.As(err, &ce) { // the options came from the command line
			return fmt.Errorf("-%s: %s", strings.ReplaceAll(strings.TrimPrefix(ce.Field, "slurm."), "_", "-"), ce.Msg)
		}
		return err
	}
	cfg, err := train.LoadConfig(config, sets)
	if err != nil {
		return err
	}
	if o.Executable != "" {
		exe = o.Executable
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	absConfig := ""
	if config != "" {
		if absConfig, err = filepath.Abs(config); err != nil {
			return err
		}
	}
	dir, err := filepath.Abs(filepath.Join(cfg.OutDir, cfg.Name))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, runfolder.State)); err == nil && !cfg.Resume {
		return fmt.Errorf("run folder %s already holds a checkpoint: set resume = true (-set resume=true) to continue "+
			"it, or choose another name; nothing was submitted", dir)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	logs := filepath.Join(dir, runfolder.Slurm)
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# captiongo train %s: one run of %d rank(s) from %s.\n", cfg.Name, max(o.NTasks, 1),
		map[bool]string{true: absConfig, false: "the built-in defaults"}[absConfig != ""])
	b.WriteString("# Written by `captiongo train -backend slurm`.\n")
	o.header(&b, "--job-name=captiongo-"+cfg.Name, "--output="+filepath.Join(logs, "%j.out"), "--chdir="+cwd)
	args := append([]string{"train", "-config", absConfig}, trainArgs...)
	for _, s := range sets {
		args = append(args, "-set", s)
	}
	if o.CPUsPerTask > 0 && !setsKey(sets, "threads") {
		args = append(args, "-set", "threads="+strconv.Itoa(o.CPUsPerTask))
	}
	launcher := o.srunRanks(&b)
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	fmt.Fprintf(&b, "exec %s%s %s\n", launcher, shellQuote(exe), strings.Join(q, " "))
	script := b.String()
	if dryRun {
		_, err := io.WriteString(out, script)
		return err
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		return ErrNoSlurm
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	undo := func() { // nothing half-written: a run folder this made goes again
		if os.IsNotExist(statErr) {
			os.RemoveAll(dir)
		}
	}
	path := filepath.Join(logs, time.Now().UTC().Format("20060102T150405.000000000")+".sbatch")
	if err := data.WriteFileAtomic(path, []byte(script)); err != nil {
		undo()
		return err
	}
	id, err := sbatch(path)
	if err != nil {
		var refused *sbatchFailed
		if errors.As(err, &refused) {
			undo()
		}
		return err
	}
	fmt.Fprintf(out, "captiongo train: submitted job %s, run %s with %d rank(s) (script %s, Slurm's log %s)\n", id,
		dir, max(o.NTasks, 1), path, filepath.Join(logs, id+".out"))
	return nil
}

// setsKey: an override sets key (as for a sweep, the experiment file's own
// threads yields to cpus_per_task).
func setsKey(sets []string, key string) bool {
	for _, s := range sets {
		if k, _, _ := strings.Cut(s, "="); strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}
