package sweep

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// writeSweep writes tiny.toml and a sweep over it into dir.
func writeSweep(t *testing.T, dir, grid, slurm string) *Sweep {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "tiny.toml"), []byte(testutil.TinyExperiment), 0o644)
	path := filepath.Join(dir, "sweep_tiny.toml")
	os.WriteFile(
		path,
		[]byte("base = \"tiny.toml\"\nout_dir = \""+filepath.Join(dir, "runs")+"\"\n[grid]\n"+grid+"\n"+slurm),
		0o644,
	)
	s, err := LoadSweep(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeBin puts executables with the given shell bodies first on PATH.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	bin := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return bin
}

func TestSlurmScriptAndOptions(t *testing.T) {
	dir := t.TempDir()
	s := writeSweep(t, dir, "lr = [1e-3, 3e-4]\nhidden_size = [16, 32]", `[slurm]
partition = "gpu"
account = "lab"
time = "1-02:00:00"
gpus_per_task = 1
cpus_per_task = 4
mem = "16G"
array_concurrency = 2
extra = ["--qos=short"]
setup = ["module load cuda/12.1"]
`)
	script, err := s.SlurmScript(s.Slurm, "/opt/captiongo", []int{0, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#SBATCH --array=0,2,3%2\n", "#SBATCH --partition=gpu\n", "#SBATCH --account=lab\n",
		"#SBATCH --time=1-02:00:00\n", "#SBATCH --gpus-per-task=1\n", "#SBATCH --cpus-per-task=4\n",
		"#SBATCH --mem=16G\n", "#SBATCH --qos=short\n", "\nmodule load cuda/12.1\n",
		"#SBATCH --output=" + filepath.Join(dir, "runs", "sweep_tiny", ".slurm", "%A_%a.out"),
		"-set threads=4", "exec /opt/captiongo \"${args[@]}\"",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "\n1) ") {
		t.Errorf("point 1 is not asked for but is in the script:\n%s", script)
	}
	// The script is valid bash and runs each task's exact command line.
	for ix, p := range s.Points() {
		if ix == 1 {
			continue
		}
		bashScript := strings.Replace(script, "exec /opt/captiongo", "printf '%s\\n'", 1)
		cmd := exec.Command("bash", "-c", "module() { :; }\n"+bashScript)
		cmd.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID="+strconv.Itoa(ix), "SLURM_ARRAY_JOB_ID=7")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("task %d: %v\n%s", ix, err, out)
		}
		log, err := os.ReadFile(filepath.Join(dir, "runs", "sweep_tiny", p.Name, "train.log"))
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Join(
			append(s.PointArgs(p, filepath.Join(dir, "runs", "sweep_tiny")), "-set", "threads=4"),
			"\n",
		)
		want = strings.Replace(want, "-config\n"+s.Base, "-config\n"+filepath.Join(dir, "tiny.toml"), 1)
		if !strings.Contains(string(log), want) {
			t.Errorf("task %d ran\n%s\nwant\n%s", ix, log, want)
		}
	}

	// Bad options are named.
	for field, body := range map[string]string{
		"slurm.time": "time = \"two hours\"", "slurm.mem": "mem = \"lots\"",
		"slurm.extra": "extra = [\"qos=short\"]", "slurm.gpu": "gpu = 1",
		"slurm.ntasks": "ntasks = -2", "slurm.nodes": "ntasks = 2\nnodes = 3",
	} {
		os.WriteFile(
			filepath.Join(dir, "bad.toml"),
			[]byte("base = \"tiny.toml\"\n[grid]\nlr = [1e-3]\n[slurm]\n"+body+"\n"),
			0o644,
		)
		_, err := LoadSweep(filepath.Join(dir, "bad.toml"))
		if err == nil || !strings.Contains(err.Error(), "bad.toml") || !strings.Contains(err.Error(), ": "+field) {
			t.Errorf("%s: error %v does not name the file and %s", body, err, field)
		} else if strings.Contains(err.Error(), "slurm: slurm.") {
			t.Errorf("%s: error %q names the table twice", body, err)
		}
	}
}

// TestSlurmSubmitFailures: no sbatch on PATH, or sbatch failing, gives a
// clear message, records nothing, and never submits a point twice.
func TestSlurmSubmitFailures(t *testing.T) {
	dir := t.TempDir()
	s := writeSweep(t, dir, "lr = [1e-3, 3e-4]", "")
	root := filepath.Join(dir, "runs", "sweep_tiny")
	var out bytes.Buffer

	t.Setenv("PATH", t.TempDir())
	if err := s.SubmitSlurm(s.Slurm, "/bin/true", false, &out); err != ErrNoSlurm {
		t.Fatalf("no sbatch: %v", err)
	}

	calls := filepath.Join(dir, "sbatch.calls")
	fakeBin(t, map[string]string{
		"sbatch": "echo call >> " + calls + "\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1",
		"squeue": "exit 0",
	})
	err := s.SubmitSlurm(s.Slurm, "/bin/true", false, &out)
	if err == nil || !strings.Contains(err.Error(), "invalid partition specified: gpu") ||
		!strings.Contains(err.Error(), "nothing was submitted") {
		t.Fatalf("failing sbatch: %v", err)
	}
	if b, _ := os.ReadFile(calls); strings.Count(string(b), "call") != 1 {
		t.Errorf("sbatch was called %d times, want once (no retries)", strings.Count(string(b), "call"))
	}
	if _, err := os.Stat(filepath.Join(root, ".slurm", "jobs.json")); err == nil {
		t.Error("a failed sbatch was recorded as a submission")
	}

	// A working sbatch; squeue then reports both tasks queued or running:
	// the second submission submits nothing.
	os.Remove(calls)
	fakeBin(t, map[string]string{
		"sbatch": "echo \"$@\" >> " + calls + "\necho '4242;cluster'",
		"squeue": "echo '4242_0|RUNNING'; echo '4242_1|PENDING'",
		"sacct":  "echo 'Slurm accounting storage is disabled' >&2; exit 1",
	})
	out.Reset()
	if err := s.SubmitSlurm(s.Slurm, "/bin/true", false, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "submitted job array 4242 with 2 point(s)") {
		t.Errorf("output: %s", out.String())
	}
	out.Reset()
	if err := s.SubmitSlurm(s.Slurm, "/bin/true", false, &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(calls); strings.Count(string(b), "\n") != 1 {
		t.Errorf("sbatch called again for queued points:\n%s\noutput: %s", b, out.String())
	}
	if !strings.Contains(out.String(), "lr-0.001 is running in Slurm already") ||
		!strings.Contains(out.String(), "lr-0.0003 is pending in Slurm already") {
		t.Errorf("output: %s", out.String())
	}
	rows, err := s.SlurmStatuses()
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].State != "running" || rows[1].State != "pending" {
		t.Errorf("status rows %+v", rows)
	}
	// Gone from the queue and not finished: submitted again (resumes from a checkpoint).
	fakeBin(t, map[string]string{"squeue": "exit 0"})
	out.Reset()
	if err := s.SubmitSlurm(s.Slurm, "/bin/true", false, &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(calls); strings.Count(string(b), "\n") != 2 {
		t.Errorf("points that left the queue unfinished were not resubmitted:\n%s", b)
	}
}

// slurmCluster is a real single-node Slurm (slurmctld + slurmd + munged)
// living in a temporary folder, on free ports.
type slurmCluster struct {
	dir, conf string
}

func freePort(t *testing.T) int {
	p, err := dist.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startSlurm starts the cluster, or skips outside CI when this machine
// cannot (not root, or no slurm-wlm/munge: `.ci/run` installs them).
func startSlurm(t *testing.T) *slurmCluster {
	t.Helper()
	var missing []string
	for _, c := range []string{"slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol"} {
		if _, err := exec.LookPath(c); err != nil {
			if _, err := os.Stat("/usr/sbin/" + c); err != nil {
				missing = append(missing, c)
			}
		}
	}
	if len(missing) > 0 || os.Geteuid() != 0 {
		msg := fmt.Sprintf(
			"a local Slurm needs root and Debian's slurm-wlm and munge (missing: %v, uid %d)",
			missing,
			os.Geteuid(),
		)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; .ci/run installs them")
		}
		t.Skip(msg)
	}
	t.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin")
	dir, err := os.MkdirTemp("", "captiongo-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	c := &slurmCluster{dir: dir, conf: filepath.Join(dir, "slurm.conf")}
	t.Cleanup(func() { c.stop(t); os.RemoveAll(dir) })

	// munged with its own key and socket.
	md := filepath.Join(dir, "munge")
	os.Mkdir(md, 0o700)
	key := make([]byte, 1024)
	f, _ := os.Open("/dev/urandom")
	f.Read(key)
	f.Close()
	os.WriteFile(filepath.Join(md, "munge.key"), key, 0o400)
	sock := filepath.Join(md, "munge.sock")
	if out, err := exec.Command("munged", "--force", "--key-file="+filepath.Join(md, "munge.key"), "--socket="+sock,
		"--pid-file="+filepath.Join(md, "munged.pid"), "--log-file="+filepath.Join(md, "munged.log"),
		"--seed-file="+filepath.Join(md, "munged.seed")).CombinedOutput(); err != nil {
		t.Fatalf("munged: %v\n%s", err, out)
	}

	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	memMiB := 2048
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		if kb/1024 > 4096 {
			memMiB = kb/1024 - 2048
		}
	}
	cpus := strconv.Itoa(runtimeCPUs())
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	os.MkdirAll(filepath.Join(dir, "spool"), 0o755)
	conf := strings.Join([]string{
		"ClusterName=captiongo-test",
		"SlurmctldHost=" + host,
		"SlurmUser=root",
		"SlurmctldPort=" + strconv.Itoa(freePort(t)),
		"SlurmdPort=" + strconv.Itoa(freePort(t)),
		"AuthType=auth/munge",
		"AuthInfo=socket=" + sock,
		"CredType=cred/munge",
		"StateSaveLocation=" + filepath.Join(dir, "state"),
		"SlurmdSpoolDir=" + filepath.Join(dir, "spool"),
		"SlurmctldPidFile=" + filepath.Join(dir, "slurmctld.pid"),
		"SlurmdPidFile=" + filepath.Join(dir, "slurmd.pid"),
		"SlurmctldLogFile=" + filepath.Join(dir, "slurmctld.log"),
		"SlurmdLogFile=" + filepath.Join(dir, "slurmd.log"),
		"ProctrackType=proctrack/linuxproc",
		"TaskPlugin=task/none",
		"JobAcctGatherType=jobacct_gather/none",
		"SelectType=select/cons_tres",
		"SelectTypeParameters=CR_Core",
		"ReturnToService=2",
		"MpiDefault=none",
		"NodeName=" + host + " CPUs=" + cpus + " RealMemory=" + strconv.Itoa(memMiB) + " State=UNKNOWN",
		"PartitionName=debug Nodes=" + host + " Default=YES MaxTime=INFINITE State=UP",
	}, "\n") + "\n"
	os.WriteFile(c.conf, []byte(conf), 0o644)
	t.Setenv("SLURM_CONF", c.conf)
	for _, d := range [][]string{{"slurmctld", "-c"}, {"slurmd"}} {
		if out, err := exec.Command(d[0], d[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", d[0], err, out, c.logs())
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := exec.Command("sinfo", "-h", "-o", "%T").Output()
		if s := strings.TrimSpace(string(out)); s == "idle" || s == "mixed" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not become idle in 60 s (sinfo: %q)\n%s", out, c.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func runtimeCPUs() int {
	out, err := exec.Command("nproc").Output()
	if n, err2 := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && err2 == nil && n > 0 {
		return n
	}
	return 1
}

func (c *slurmCluster) logs() string {
	var b strings.Builder
	for _, f := range []string{"slurmctld.log", "slurmd.log", "munge/munged.log"} {
		data, _ := os.ReadFile(filepath.Join(c.dir, f))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "--- %s (end)\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// alive: the process exists and is not a zombie waiting for its parent.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// stop shuts Slurm down and ends munged, waiting for every daemon to exit.
func (c *slurmCluster) stop(t *testing.T) {
	// t.Setenv's SLURM_CONF is already undone when this cleanup runs.
	sd := exec.Command("scontrol", "shutdown")
	sd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	if out, err := sd.CombinedOutput(); err != nil {
		t.Logf("scontrol shutdown: %v %s", err, out)
	}
	for _, pf := range []string{"slurmd.pid", "slurmctld.pid", "munge/munged.pid"} {
		b, err := os.ReadFile(filepath.Join(c.dir, pf))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		if pf == "munge/munged.pid" {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		for i := 0; i < 100 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			t.Logf("%s (pid %d) did not exit; killing it", pf, pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestSlurmSweep submits a 4-point sweep of the tiny experiment to a real
// local Slurm as one job array, checks that submitting again while it runs
// submits nothing, waits for the array, and checks the four runs.
func TestSlurmSweep(t *testing.T) {
	c := startSlurm(t)
	dir := t.TempDir()
	exe := buildCaptiongo(t, dir)
	s := writeSweep(
		t,
		dir,
		"lr = [1e-3, 3e-4]\nhidden_size = [16, 24]",
		"[slurm]\ncpus_per_task = 1\ntime = \"00:10:00\"\n",
	)
	root := filepath.Join(dir, "runs", "sweep_tiny")

	// Through the command line, as a user does.
	cmd := exec.Command(
		exe,
		"experiment",
		"-backend",
		"slurm",
		"-array-concurrency",
		"2",
		filepath.Join(dir, "sweep_tiny.toml"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "with 4 point(s)") {
		t.Fatalf("submit: %v\n%s\n%s", err, out, c.logs())
	}
	jobs, err := readJobs(root)
	if err != nil || len(jobs) != 1 || len(jobs[0].Tasks) != 4 {
		t.Fatalf("recorded jobs %+v, %v", jobs, err)
	}
	script, _ := os.ReadFile(jobs[0].Script)
	if !strings.Contains(string(script), "--array=0,1,2,3%2") {
		t.Errorf("script:\n%s", script)
	}
	// At once again: every point is queued, running or already done.
	out, err = exec.Command(exe, "experiment", "-backend", "slurm", filepath.Join(dir, "sweep_tiny.toml")).
		CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to submit") {
		t.Fatalf("second submission: %v\n%s", err, out)
	}
	if jobs, _ := readJobs(root); len(jobs) != 1 {
		t.Fatalf("the second submission submitted job(s): %+v", jobs)
	}
	status, _ := exec.Command(exe, "experiment", "-backend", "slurm", "-status", filepath.Join(dir, "sweep_tiny.toml")).
		CombinedOutput()
	t.Logf("status while queued:\n%s", status)

	deadline := time.Now().Add(8 * time.Minute)
	for {
		q, err := exec.Command("squeue", "-h", "-r", "-j", jobs[0].JobID, "-o", "%i %T").Output()
		if err != nil {
			t.Fatalf("squeue: %v\n%s", err, c.logs())
		}
		if strings.TrimSpace(string(q)) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the array did not finish in 8 minutes:\n%s\n%s", q, c.logs())
		}
		time.Sleep(time.Second)
	}
	for _, p := range s.Points() {
		if st, _ := PointStatus(root, p); st != "done" {
			b, _ := os.ReadFile(filepath.Join(root, p.Name, "train.log"))
			sl, _ := os.ReadFile(filepath.Join(root, ".slurm", jobs[0].JobID+"_0.out"))
			t.Fatalf("point %s is %s:\n%s\nslurm output:\n%s\n%s", p.Name, st, b, sl, c.logs())
		}
		log, _ := os.ReadFile(filepath.Join(root, p.Name, "train.log"))
		if !strings.Contains(string(log), "captiongo: sweep sweep_tiny, point "+p.Name+", job "+jobs[0].JobID+"_") {
			t.Errorf("point %s was not run by the array job:\n%s", p.Name, log)
		}
		files, _ := filepath.Glob(filepath.Join(root, p.Name, "events.out.tfevents.*"))
		if len(files) != 1 {
			t.Fatalf("point %s: event files %v", p.Name, files)
		}
		evs, err := tensorboard.ReadEvents(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) < 5 {
			t.Errorf("point %s: only %d events", p.Name, len(evs))
		}
	}
	status, err = exec.Command(exe, "experiment", "-backend", "slurm", "-status", filepath.Join(dir, "sweep_tiny.toml")).
		CombinedOutput()
	if err != nil || strings.Count(string(status), " done ") != 4 ||
		!strings.Contains(string(status), "Slurm job(s): "+jobs[0].JobID) {
		t.Errorf("status after the array: %v\n%s", err, status)
	}
	out, err = exec.Command(exe, "experiment", "-backend", "slurm", filepath.Join(dir, "sweep_tiny.toml")).
		CombinedOutput()
	if err != nil || strings.Count(string(out), "already finished, skipped") != 4 ||
		!strings.Contains(string(out), "nothing to submit") {
		t.Errorf("resubmission after the array: %v\n%s", err, out)
	}
}

// slurmTiny starts the local Slurm and returns it, a folder, a captiongo
// built into it and the tiny experiment written there.
func slurmTiny(t *testing.T) (*slurmCluster, string, string, string) {
	c := startSlurm(t)
	dir := t.TempDir()
	exe := buildCaptiongo(t, dir)
	exp := filepath.Join(dir, "tiny.toml")
	if err := os.WriteFile(exp, []byte(testutil.TinyExperiment), 0o644); err != nil {
		t.Fatal(err)
	}
	return c, dir, exe, exp
}

// TestSlurmTwoTaskRun: one data-parallel run as a two-task Slurm job step on
// the real local Slurm: srun starts two tasks, each reads its rank from
// Slurm's environment and the rendezvous host from SLURM_JOB_NODELIST, and
// rank 0 alone writes the finished run.
func TestSlurmTwoTaskRun(t *testing.T) {
	c, dir, exe, exp := slurmTiny(t)
	out, err := exec.Command("srun", "-N1", "-n2", "-c1", "--time=10",
		"--export=ALL,MASTER_PORT="+strconv.Itoa(freePort(t)),
		exe, "train", "-config", exp, "-set", "out_dir="+filepath.Join(dir, "runs"), "-set", "name=ddp").
		CombinedOutput()
	if err != nil {
		t.Fatalf("srun: %v\n%s\n%s", err, out, c.logs())
	}
	log := string(out)
	if !strings.Contains(log, "data-parallel: 2 ranks (slurm environment") || strings.Count(log, "done: ") != 1 {
		t.Errorf("the job's output:\n%s", log)
	}
	b, err := os.ReadFile(filepath.Join(dir, "runs", "ddp", "state.json"))
	if err != nil || !strings.Contains(string(b), `"finished": true`) {
		t.Errorf("state.json: %v\n%s", err, b)
	}
	t.Logf("srun -n2: %s", strings.SplitN(log[strings.Index(log, "data-parallel"):], "\n", 2)[0])
}

// TestSlurmSweepOfDataParallelRuns: a sweep whose points are two-rank runs
// (slurm.ntasks = 2) on the real local Slurm: the array task's script starts
// both ranks with srun and the point finishes as one run.
func TestSlurmSweepOfDataParallelRuns(t *testing.T) {
	c := startSlurm(t)
	dir := t.TempDir()
	exe := buildCaptiongo(t, dir)
	s := writeSweep(t, dir, "lr = [1e-3]", "[slurm]\nntasks = 2\nnodes = 1\ncpus_per_task = 1\ntime = \"00:10:00\"\n")
	script, err := s.SlurmScript(s.Slurm, exe, []int{0})
	if err != nil || !strings.Contains(script, "#SBATCH --ntasks=2\n") ||
		!strings.Contains(script, "#SBATCH --nodes=1\n") || !strings.Contains(script, "exec srun --kill-on-bad-exit=1 ") {
		t.Fatalf("script (%v):\n%s", err, script)
	}
	out, err := exec.Command(exe, "experiment", "-backend", "slurm", filepath.Join(dir, "sweep_tiny.toml")).
		CombinedOutput()
	if err != nil {
		t.Fatalf("submit: %v\n%s\n%s", err, out, c.logs())
	}
	root := filepath.Join(dir, "runs", "sweep_tiny")
	jobs, err := readJobs(root)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %+v, %v", jobs, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		q, _ := exec.Command("squeue", "-h", "-r", "-j", jobs[0].JobID, "-o", "%i %T").Output()
		if strings.TrimSpace(string(q)) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not finish in 5 minutes:\n%s\n%s", q, c.logs())
		}
		time.Sleep(time.Second)
	}
	p := s.Points()[0]
	log, _ := os.ReadFile(filepath.Join(root, p.Name, "train.log"))
	if st, _ := PointStatus(root, p); st != "done" || !strings.Contains(string(log), "data-parallel: 2 ranks (slurm") {
		sl, _ := os.ReadFile(filepath.Join(root, ".slurm", jobs[0].JobID+"_0.out"))
		t.Fatalf("point %s is %s:\n%s\nslurm output:\n%s\n%s", p.Name, st, log, sl, c.logs())
	}
}

// TestSlurmTrainRun: `captiongo train -backend slurm -ntasks 2` submits one
// job on the real local Slurm whose two tasks are one run's ranks; Slurm's
// log lands in the run folder's slurm/. Submitting again without resume is
// refused before sbatch, and a refused sbatch leaves no run folder behind.
func TestSlurmTrainRun(t *testing.T) {
	c, dir, exe, exp := slurmTiny(t)
	runs := filepath.Join(dir, "runs")
	submit := func(name string, flags ...string) (string, error) {
		args := append([]string{"train", "-backend", "slurm"}, flags...)
		args = append(args, "-config", exp, "-set", "out_dir="+runs, "-set", "name="+name)
		cmd := exec.Command(exe, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := submit("ddp", "-ntasks", "2", "-nodes", "1", "-cpus-per-task", "1", "-time", "10")
	if err != nil {
		t.Fatalf("submit: %v\n%s\n%s", err, out, c.logs())
	}
	id := regexp.MustCompile(`submitted job (\d+),`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no job id in %q", out)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		q, _ := exec.Command("squeue", "-h", "-j", id[1], "-o", "%T").Output()
		if strings.TrimSpace(string(q)) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not finish in 5 minutes: %s\n%s", id[1], q, c.logs())
		}
		time.Sleep(time.Second)
	}
	run := filepath.Join(runs, "ddp")
	log, _ := os.ReadFile(filepath.Join(run, "slurm", id[1]+".out"))
	st, err := os.ReadFile(filepath.Join(run, "state.json"))
	if err != nil || !strings.Contains(string(st), `"finished": true`) ||
		!strings.Contains(string(log), "data-parallel: 2 ranks (slurm environment") ||
		strings.Count(string(log), "done: ") != 1 {
		t.Fatalf("state %v %s\nSlurm's log of job %s:\n%s\n%s", err, st, id[1], log, c.logs())
	}
	if out, err := submit("ddp"); err == nil || !strings.Contains(out, "already holds a checkpoint") {
		t.Errorf("a second submission without resume: %v %s", err, out)
	}
	if out, err := submit("bad", "-partition", "nosuch"); err == nil || !strings.Contains(out, "sbatch failed") {
		t.Errorf("-partition nosuch: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(runs, "bad")); !os.IsNotExist(err) {
		t.Errorf("a refused submission left its run folder: %v", err)
	}
	if out, err := submit("odd", "-ntasks", "3"); err == nil || !strings.Contains(out, "-ntasks 3") {
		t.Errorf("-ntasks 3 with batch_size 16: %v %s", err, out)
	}
	t.Logf("job %s: %s", id[1], strings.SplitN(string(log[strings.Index(string(log), "data-parallel"):]), "\n", 2)[0])
}
