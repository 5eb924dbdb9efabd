package dist

import (
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want Env
		ok   bool
		err  string
	}{
		{map[string]string{}, Env{}, false, ""},
		{map[string]string{"WORLD_SIZE": "1", "RANK": "0"}, Env{}, false, ""},
		{map[string]string{"WORLD_SIZE": "1", "RANK": "0", "MASTER_ADDR": "h", ForceEnv: "1"},
			Env{World: 1, Addr: "h", Port: DefaultPort, From: "torchrun"}, true, ""},
		{map[string]string{"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "n1",
			"MASTER_PORT": "1234"}, Env{Rank: 2, World: 4, Addr: "n1", Port: 1234, From: "torchrun"}, true, ""},
		{map[string]string{"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"},
			Env{Rank: 1, World: 2, LocalRank: 1, Addr: "127.0.0.1", Port: DefaultPort, From: "torchrun"}, true, ""},
		{map[string]string{"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
			"SLURM_JOB_NODELIST": "gpu[03-04,07]"},
			Env{Rank: 5, World: 8, LocalRank: 1, Addr: "gpu03", Port: DefaultPort, From: "slurm"}, true, ""},
		{map[string]string{"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, Env{}, false, ""},
		{map[string]string{"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h"}, Env{}, false, "rank 2 of a world of 2"},
		{map[string]string{"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "h"}, Env{}, false, `RANK="x"`},
		{map[string]string{"WORLD_SIZE": "2", "RANK": "0"}, Env{}, false, "MASTER_ADDR is not set"},
		{map[string]string{"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, Env{}, false,
			"MASTER_PORT=70000"},
		{map[string]string{"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, Env{}, false,
			"SLURM_JOB_NODELIST is empty"},
	} {
		got, ok, err := FromEnv(func(k string) string { return c.env[k] })
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one containing %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || ok != c.ok || (ok && got != c.want) {
			t.Errorf("%v: %+v %v %v, want %+v %v", c.env, got, ok, err, c.want, c.ok)
		}
	}
}

func TestFirstHost(t *testing.T) {
	for in, want := range map[string]string{"node7": "node7", "a,b": "a", "gpu[01-04,07],cpu1": "gpu01",
		"x-y[9]": "x-y9", "rack1-n[002,010-011]": "rack1-n002"} {
		if got, err := FirstHost(in); err != nil || got != want {
			t.Errorf("FirstHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := FirstHost("n[]"); err == nil {
		t.Error("n[]: no error")
	}
}

func TestShard(t *testing.T) {
	for _, c := range [][3]int{{32, 0, 2}, {32, 1, 2}, {7, 0, 3}, {7, 2, 3}, {1, 1, 2}} {
		lo, hi := Shard(c[0], c[1], c[2])
		total := 0
		for r := 0; r < c[2]; r++ {
			a, b := Shard(c[0], r, c[2])
			total += b - a
			if r == c[1] && (a != lo || b != hi) {
				t.Fatal("not deterministic")
			}
		}
		if total != c[0] || hi-lo < c[0]/c[2] || hi-lo > c[0]/c[2]+1 {
			t.Errorf("Shard(%v) = [%d, %d), shares total %d", c, lo, hi, total)
		}
	}
}
