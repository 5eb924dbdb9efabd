// Package dist is data-parallel training's process group: ranks as processes
// (torchrun's environment or Slurm's), rendezvous on c10d's TCPStore and
// collectives on c10d's ProcessGroupGloo, PyTorch's own, from libtorch. A
// build without gloo's headers (the c10d tag off) has the environment parsing
// and reports that collectives are not built in.
package dist

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Env is a rank's place in a run: torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT, or Slurm's SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID and the first host of SLURM_JOB_NODELIST (port MASTER_PORT,
// else 29500).
type Env struct {
	Rank, World, LocalRank int
	Addr                   string
	Port                   int
	From                   string // "torchrun" or "slurm"
}

// DefaultPort is the rendezvous port when none is set, as torchrun's.
const DefaultPort = 29500

// ForceEnv, set to 1, makes a world of one rank a process group too (to
// check the collectives, NCCL's on one GPU, without a second rank).
const ForceEnv = "CAPTIONGO_DIST_WORLD1"

// FromEnv reads a rank's environment through getenv; ok is false when the
// process is not one of several ranks (no WORLD_SIZE, or one of 1; under
// Slurm, one task), unless ForceEnv is 1.
func FromEnv(getenv func(string) string) (e Env, ok bool, err error) {
	alone := func(world int) bool { return world == 1 && getenv(ForceEnv) != "1" }
	num := func(key string, min int) (int, error) {
		v := getenv(key)
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < min {
			return 0, fmt.Errorf("%s=%q: want an integer of at least %d", key, v, min)
		}
		return n, nil
	}
	port := func() (int, error) {
		if getenv("MASTER_PORT") == "" {
			return DefaultPort, nil
		}
		p, err := num("MASTER_PORT", 1)
		if err == nil && p > 65535 {
			err = fmt.Errorf("MASTER_PORT=%d: want 1..65535", p)
		}
		return p, err
	}
	switch {
	case getenv("WORLD_SIZE") != "":
		e.From = "torchrun"
		if e.World, err = num("WORLD_SIZE", 1); err != nil || alone(e.World) {
			return e, false, err
		}
		if e.Rank, err = num("RANK", 0); err != nil {
			return e, false, err
		}
		e.LocalRank = e.Rank
		if getenv("LOCAL_RANK") != "" {
			if e.LocalRank, err = num("LOCAL_RANK", 0); err != nil {
				return e, false, err
			}
		}
		if e.Addr = getenv("MASTER_ADDR"); e.Addr == "" {
			return e, false, fmt.Errorf("MASTER_ADDR is not set: rank 0's host is needed for the rendezvous")
		}
	case getenv("SLURM_NTASKS") != "" && getenv("SLURM_PROCID") != "":
		e.From = "slurm"
		if e.World, err = num("SLURM_NTASKS", 1); err != nil || alone(e.World) {
			return e, false, err
		}
		if e.Rank, err = num("SLURM_PROCID", 0); err != nil {
			return e, false, err
		}
		if e.LocalRank, err = num("SLURM_LOCALID", 0); err != nil {
			return e, false, err
		}
		if e.Addr = getenv("MASTER_ADDR"); e.Addr == "" {
			if e.Addr, err = FirstHost(getenv("SLURM_JOB_NODELIST")); err != nil {
				return e, false, err
			}
		}
	default:
		return e, false, nil
	}
	if e.Rank >= e.World {
		return e, false, fmt.Errorf("rank %d of a world of %d", e.Rank, e.World)
	}
	if e.Port, err = port(); err != nil {
		return e, false, err
	}
	return e, true, nil
}

var bracket = regexp.MustCompile(`^([^\[,]*)\[([^\]]+)\]`)

// FirstHost is the first host of a Slurm node list: "gpu[01-04,07],cpu1"
// gives gpu01.
func FirstHost(list string) (string, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return "", fmt.Errorf("SLURM_JOB_NODELIST is empty and MASTER_ADDR is not set: no host for the rendezvous")
	}
	if m := bracket.FindStringSubmatch(list); m != nil {
		first := strings.Split(strings.Split(m[2], ",")[0], "-")[0]
		if first == "" {
			return "", fmt.Errorf("SLURM_JOB_NODELIST=%q: cannot read its first host", list)
		}
		return m[1] + first, nil
	}
	host := strings.Split(list, ",")[0]
	if host == "" || strings.ContainsAny(host, "[]") {
		return "", fmt.Errorf("SLURM_JOB_NODELIST=%q: cannot read its first host", list)
	}
	return host, nil
}

// Shard is rank's part [lo, hi) of n items split over world ranks as evenly
// as possible (the first n % world ranks take one more).
func Shard(n, rank, world int) (lo, hi int) {
	q, r := n/world, n%world
	lo = rank*q + min(rank, r)
	hi = lo + q
	if rank < r {
		hi++
	}
	return lo, hi
}

// FreePort is a TCP port free on the loopback interface now (the system
// picks it), for a rendezvous on this host.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
