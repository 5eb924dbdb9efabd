package sweep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/train"
)

// SlurmOptions are the sbatch settings of a sweep: the sweep file's [slurm]
// table, overridden by command-line flags.
type SlurmOptions struct {
	Partition   string `toml:"partition"`     // --partition
	Account     string `toml:"account"`       // --account
	Time        string `toml:"time"`          // --time, e.g. "04:00:00" or "1-00:00:00"
	GPUsPerTask int    `toml:"gpus_per_task"` // --gpus-per-task
	// each point one data-parallel run of this many ranks (--ntasks; srun starts them; 0 or 1 = one process)
	NTasks int `toml:"ntasks"`
	Nodes  int `toml:"nodes"` // --nodes, for ntasks > 1 (0 = Slurm's choice)
	// --cpus-per-task (also libtorch's threads unless the sweep sets threads)
	CPUsPerTask int      `toml:"cpus_per_task"`
	Mem         string   `toml:"mem"`               // --mem, e.g. "16G"
	Concurrency int      `toml:"array_concurrency"` // at most this many points at once (--array=...%N; 0 = no limit)
	Extra       []string `toml:"extra"`             // more sbatch options, e.g. ["--qos=short", "--constraint=a100"]
	Setup       []string `toml:"setup"`             // shell lines run before each point, e.g. ["module load cuda/12.1"]
	// captiongo binary the tasks run (default: this one; must be on the shared filesystem)
	Executable string `toml:"executable"`
}

var (
	slurmTimeRe = regexp.MustCompile(`^(\d+-)?\d+(:\d{1,2}){0,2}$`)
	slurmMemRe  = regexp.MustCompile(`^\d+[KMGT]?$`)
)

// Validate names the first bad option: a *ConfigError whose Field is the
// option's key (slurm.time, ...); the caller fills in File.
func (o SlurmOptions) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &train.ConfigError{Field: "slurm." + field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case o.Time != "" && !slurmTimeRe.MatchString(o.Time):
		return bad("time", "%q: use minutes, HH:MM:SS or D-HH:MM:SS", o.Time)
	case o.Mem != "" && !slurmMemRe.MatchString(o.Mem):
		return bad("mem", "%q: use a number with an optional K, M, G or T suffix, e.g. 16G", o.Mem)
	case o.GPUsPerTask < 0:
		return bad("gpus_per_task", "%d: must not be negative", o.GPUsPerTask)
	case o.CPUsPerTask < 0:
		return bad("cpus_per_task", "%d: must not be negative", o.CPUsPerTask)
	case o.Concurrency < 0:
		return bad("array_concurrency", "%d: must not be negative", o.Concurrency)
	case o.NTasks < 0:
		return bad("ntasks", "%d: must not be negative", o.NTasks)
	case o.Nodes < 0 || (o.Nodes > 0 && o.Nodes > max(o.NTasks, 1)):
		return bad("nodes", "%d: want 0 (Slurm's choice) or 1..ntasks (%d)", o.Nodes, max(o.NTasks, 1))
	}
	for _, e := range o.Extra {
		if !strings.HasPrefix(e, "-") || strings.ContainsAny(e, "\n\r") {
			return bad("extra", "%q: give one sbatch option per entry, starting with - (e.g. \"--qos=short\")", e)
		}
	}
	for _, s := range o.Setup {
		if strings.ContainsAny(s, "\n\r") {
			return bad("setup", "%q: one shell line per entry", s)
		}
	}
	return nil
}

// SlurmJob is one submitted job array, recorded in <root>/.slurm/jobs.json.
type SlurmJob struct {
	JobID     string         `json:"job_id"`
	Submitted time.Time      `json:"submitted"`
	Script    string         `json:"script"`
	Tasks     map[int]string `json:"tasks"` // array index -> point
}

// ErrNoSlurm says that sbatch is not on PATH.
var ErrNoSlurm = errors.New(
	"sbatch is not on PATH: -backend slurm needs the Slurm client commands (sbatch, squeue) of a cluster's login node; " +
		"nothing was submitted",
)

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%",
			r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// slurmRoot is the absolute run folder of the sweep.
func (s *Sweep) slurmRoot() (string, error) {
	root, err := s.OutRoot()
	if err != nil {
		return "", err
	}
	return filepath.Abs(root)
}

// SlurmScript is the sbatch script that runs the given points (indexes into
// Points()) as one job array, each task one `captiongo train` appending to
// <root>/<point>/train.log.
func (s *Sweep) SlurmScript(o SlurmOptions, exe string, indexes []int) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	root, err := s.slurmRoot()
	if err != nil {
		return "", err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	absBase, err := filepath.Abs(s.Base)
	if err != nil {
		return "", err
	}
	points := s.Points()
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/bash\n")
	fmt.Fprintf(
		&b,
		"# captiongo sweep %s: %d of %d point(s) of %s, one array task each.\n",
		s.Name,
		len(indexes),
		len(points),
		s.file,
	)
	fmt.Fprintf(
		&b,
		"# Written by `captiongo experiment -backend slurm`; submitting again skips finished\n# and queued points, and "+
			"interrupted points resume from their last checkpoint.\n",
	)
	ids := make([]string, len(indexes))
	for i, ix := range indexes {
		ids[i] = strconv.Itoa(ix)
	}
	array := strings.Join(ids, ",")
	if o.Concurrency > 0 {
		array += "%" + strconv.Itoa(o.Concurrency)
	}
	o.header(&b, "--job-name=captiongo-"+s.Name, "--array="+array,
		"--output="+filepath.Join(root, ".slurm", "%A_%a.out"), "--chdir="+cwd)
	_, setsThreads := s.Set["threads"]
	if _, ok := s.Grid["threads"]; ok {
		setsThreads = true
	}
	b.WriteString("case \"${SLURM_ARRAY_TASK_ID:?not a Slurm array task}\" in\n")
	for _, ix := range indexes {
		p := points[ix]
		args := s.PointArgs(p, root)
		args[2] = absBase // -config
		if o.CPUsPerTask > 0 && !setsThreads {
			args = append(args, "-set", "threads="+strconv.Itoa(o.CPUsPerTask))
		}
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = shellQuote(a)
		}
		fmt.Fprintf(&b, "%d) point=%s; args=(%s) ;;\n", ix, shellQuote(p.Name), strings.Join(q, " "))
	}
	b.WriteString(
		"*) echo \"captiongo: array task $SLURM_ARRAY_TASK_ID is not a point of this script\" >&2; exit 2 ;;\nesac\n",
	)
	qroot := shellQuote(root)
	fmt.Fprintf(&b, "mkdir -p %s/\"$point\"\n", qroot)
	fmt.Fprintf(
		&b,
		"echo \"captiongo: sweep %s, point $point, job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname), $(date "+
			"-Is)\" >> %s/\"$point\"/train.log\n",
		s.Name,
		qroot,
	)
	launcher := o.srunRanks(&b)
	fmt.Fprintf(&b, "exec %s%s \"${args[@]}\" >> %s/\"$point\"/train.log 2>&1\n", launcher, shellQuote(exe), qroot)
	return b.String(), nil
}

// header writes the script's #SBATCH lines (first, then the options') and
// its setup lines.
func (o SlurmOptions) header(b *strings.Builder, first ...string) {
	lines := first
	if o.Partition != "" {
		lines = append(lines, "--partition="+o.Partition)
	}
	if o.Account != "" {
		lines = append(lines, "--account="+o.Account)
	}
	if o.Time != "" {
		lines = append(lines, "--time="+o.Time)
	}
	if o.GPUsPerTask > 0 {
		lines = append(lines, "--gpus-per-task="+strconv.Itoa(o.GPUsPerTask))
	}
	if o.CPUsPerTask > 0 {
		lines = append(lines, "--cpus-per-task="+strconv.Itoa(o.CPUsPerTask))
	}
	if o.NTasks > 1 {
		lines = append(lines, "--ntasks="+strconv.Itoa(o.NTasks))
		if o.Nodes > 0 {
			lines = append(lines, "--nodes="+strconv.Itoa(o.Nodes))
		}
	}
	if o.Mem != "" {
		lines = append(lines, "--mem="+o.Mem)
	}
	lines = append(lines, o.Extra...)
	for _, l := range lines {
		fmt.Fprintf(b, "#SBATCH %s\n", l)
	}
	b.WriteString("set -euo pipefail\n")
	for _, l := range o.Setup {
		b.WriteString(l + "\n")
	}
}

// srunRanks is the launcher of a multi-task run: srun starts the tasks, each
// reads its rank from Slurm's environment; they meet on the first node, on a
// port of this job's own; one failing ends the others.
func (o SlurmOptions) srunRanks(b *strings.Builder) string {
	if o.NTasks <= 1 {
		return ""
	}
	b.WriteString("export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n")
	return "srun --kill-on-bad-exit=1 "
}

// readJobs reads <root>/.slurm/jobs.json (none yet: empty).
func readJobs(root string) ([]SlurmJob, error) {
	path := filepath.Join(root, ".slurm", "jobs.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var jobs []SlurmJob
	if err := json.Unmarshal(b, &jobs); err != nil {
		return nil, fmt.Errorf("%s: %v (move it away to forget earlier submissions)", path, err)
	}
	return jobs, nil
}

// SlurmTaskStates asks squeue (queued and running tasks) and, where Slurm
// keeps accounting, sacct (finished tasks) for the state of every array
// task of the recorded jobs: point name -> state (PENDING, RUNNING, FAILED,
// ...). Tasks Slurm no longer knows are left out.
func SlurmTaskStates(jobs []SlurmJob) map[string]string {
	states := map[string]string{}
	if len(jobs) == 0 {
		return states
	}
	byJob := map[string]SlurmJob{}
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		byJob[j.JobID] = j
		ids = append(ids, j.JobID)
	}
	set := func(jobTask, state string) {
		jid, task, ok := strings.Cut(jobTask, "_")
		if !ok {
			return
		}
		ix, err := strconv.Atoi(task)
		if err != nil {
			return
		}
		if p, ok := byJob[jid].Tasks[ix]; ok {
			states[p] = strings.Fields(state + " ")[0] // "CANCELLED by 0" -> CANCELLED
		}
	}
	// Finished tasks first (sacct, where accounting is on), then the live queue over them.
	if out, err := exec.Command("sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", strings.Join(ids,
		",")).Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Split(l, "|"); len(f) == 2 {
				set(f[0], f[1])
			}
		}
	}
	if out, err := exec.Command("squeue", "-h", "-r", "-o", "%i|%T", "-j", strings.Join(ids, ",")).Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Split(l, "|"); len(f) == 2 {
				set(f[0], f[1])
			}
		}
	}
	return states
}

// SubmitSlurm submits the points that are neither finished nor queued or
// running in an earlier submission, as one job array. With dryRun it prints
// the script and submits nothing. A failed sbatch is reported with its
// message and never retried, so nothing is submitted twice.
func (s *Sweep) SubmitSlurm(o SlurmOptions, exe string, dryRun bool, out io.Writer) error {
	if err := o.Validate(); err != nil {
		return withFile(err, s.file)
	}
	if o.Executable != "" {
		exe = o.Executable
	}
	exe, err := filepath.Abs(exe)
	if err != nil {
		return err
	}
	root, err := s.slurmRoot()
	if err != nil {
		return err
	}
	if !dryRun {
		if _, err := exec.LookPath("sbatch"); err != nil {
			return ErrNoSlurm
		}
	}
	dir := filepath.Join(root, ".slurm")
	live := map[string]string{}
	if !dryRun {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// One submitter at a time per sweep folder.
		lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
		jobs, err := readJobs(root)
		if err != nil {
			return err
		}
		for p, st := range SlurmTaskStates(jobs) {
			if slurmActive(st) {
				live[p] = st
			}
		}
	}
	points := s.Points()
	var indexes []int
	for i, p := range points {
		if st, _ := PointStatus(root, p); st == "done" {
			fmt.Fprintf(out, "sweep %s: %s already finished, skipped\n", s.Name, p.Name)
			continue
		}
		if st, ok := live[p.Name]; ok {
			fmt.Fprintf(out, "sweep %s: %s is %s in Slurm already, skipped\n", s.Name, p.Name, strings.ToLower(st))
			continue
		}
		indexes = append(indexes, i)
	}
	if len(indexes) == 0 {
		fmt.Fprintf(out, "sweep %s: nothing to submit\n", s.Name)
		return nil
	}
	script, err := s.SlurmScript(o, exe, indexes)
	if err != nil {
		return err
	}
	if dryRun {
		io.WriteString(out, script)
		return nil
	}
	scriptPath := filepath.Join(dir, time.Now().UTC().Format("20060102T150405.000000000")+".sbatch")
	if err := data.WriteFileAtomic(scriptPath, []byte(script)); err != nil {
		return err
	}
	jobID, err := sbatch(scriptPath)
	if err != nil {
		return err
	}
	job := SlurmJob{JobID: jobID, Submitted: time.Now().UTC(), Script: scriptPath, Tasks: map[int]string{}}
	for _, ix := range indexes {
		job.Tasks[ix] = points[ix].Name
	}
	jobs, err := readJobs(root)
	if err != nil {
		return fmt.Errorf(
			"submitted job %s but could not record it (%v): do not submit again before it ends",
			jobID,
			err,
		)
	}
	jobs = append(jobs, job)
	b, _ := json.MarshalIndent(jobs, "", " ")
	if err := data.WriteFileAtomic(filepath.Join(dir, "jobs.json"), b); err != nil {
		return fmt.Errorf(
			"submitted job %s but could not record it (%v): do not submit again before it ends",
			jobID,
			err,
		)
	}
	fmt.Fprintf(
		out,
		"sweep %s: submitted job array %s with %d point(s) (script %s, Slurm logs %s/%s_<task>.out, point logs "+
			"%s/<point>/train.log)\n",
		s.Name,
		jobID,
		len(indexes),
		scriptPath,
		dir,
		jobID,
		root,
	)
	return nil
}

// sbatchFailed is sbatch's own refusal: nothing was submitted.
type sbatchFailed struct{ msg, script string }

func (e *sbatchFailed) Error() string {
	return fmt.Sprintf("sbatch failed: %s (script %s); nothing was submitted (fix the cause and run the same command "+
		"again)", e.msg, e.script)
}

// sbatch submits the script and returns the job id it answers. A refusal is
// a *sbatchFailed with sbatch's message; it is never retried, so nothing is
// submitted twice.
func sbatch(script string) (string, error) {
	cmd := exec.Command("sbatch", "--parsable", script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", &sbatchFailed{msg, script}
	}
	id, _, _ := strings.Cut(strings.TrimSpace(stdout.String()), ";") // "id[;cluster]"
	if _, err := strconv.Atoi(id); err != nil {
		return "", fmt.Errorf("sbatch %s answered %q, not a job id: check squeue before submitting again", script,
			stdout.String())
	}
	return id, nil
}

// slurmActive: the task still holds or waits for resources.
func slurmActive(state string) bool {
	switch state {
	case "PENDING",
		"RUNNING",
		"CONFIGURING",
		"COMPLETING",
		"REQUEUED",
		"RESIZING",
		"SUSPENDED",
		"STAGE_OUT",
		"SIGNALING",
		"REQUEUE_HOLD",
		"REQUEUE_FED",
		"RESV_DEL_HOLD",
		"SPECIAL_EXIT",
		"STOPPED":
		return true
	}
	return false
}

// SlurmStatus is one row of the Slurm status table.
type SlurmStatus struct {
	Point string
	State string // done, partial, new, or Slurm's state in lower case (pending, running, failed, ...)
	Best  string
}

// SlurmStatuses combines the run folders with what Slurm says of the
// recorded jobs: a finished run is "done"; otherwise Slurm's state when it
// knows the task, else the folder's "partial" or "new".
func (s *Sweep) SlurmStatuses() ([]SlurmStatus, error) {
	root, err := s.slurmRoot()
	if err != nil {
		return nil, err
	}
	jobs, err := readJobs(root)
	if err != nil {
		return nil, err
	}
	states := SlurmTaskStates(jobs)
	var rows []SlurmStatus
	for _, p := range s.Points() {
		st, state := PointStatus(root, p)
		if sl, ok := states[p.Name]; ok && st != "done" {
			st = strings.ToLower(sl)
		}
		rows = append(rows, SlurmStatus{Point: p.Name, State: st, Best: bestString(state)})
	}
	return rows, nil
}

// PrintSlurmTable prints point, state and best metric, with the recorded jobs.
func (s *Sweep) PrintSlurmTable(out io.Writer) error {
	rows, err := s.SlurmStatuses()
	if err != nil {
		return err
	}
	root, _ := s.slurmRoot()
	jobs, _ := readJobs(root)
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.JobID
	}
	sort.Strings(ids)
	fmt.Fprintf(out, "sweep %s in %s, Slurm job(s): %s\n", s.Name, root, strings.Join(ids, ", "))
	fmt.Fprintf(out, "%-40s %-10s %s\n", "point", "state", "best")
	for _, r := range rows {
		fmt.Fprintf(out, "%-40s %-10s %s\n", r.Point, r.State, r.Best)
	}
	return nil
}

// withFile sets the file of a *ConfigError (Validate leaves it empty).
func withFile(err error, file string) error {
	var ce *train.ConfigError
	if errors.As(err, &ce) && ce.File == "" {
		ce.File = file
	}
	return err
}
