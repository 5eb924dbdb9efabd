package torch

// #include <stdint.h>
// int captiongo_cpu_cache_state();
// int captiongo_cpu_cache_stats(int64_t *out);
// void captiongo_cpu_cache_empty();
// int64_t captiongo_cgroup_memory_limit();
// int64_t captiongo_memory_limit_from(const char *cgroup_file, const char *root);
// #include <stdlib.h>
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// CPUCacheStats describes captiongo's cache of freed CPU tensor buffers
// (cpucache.cpp), which libtorch allocates CPU tensors through.
type CPUCacheStats struct {
	On          bool
	Why         string // plain words: on with which cap, or why off
	CapBytes    int64  // most free bytes it keeps
	CachedBytes int64  // free bytes it keeps now
	LiveBytes   int64  // bytes of live tensors in cached size classes (64 KB and more)
	Hits        int64  // requests served from the cache
	Misses      int64  // requests that went to the system
	Emptied     int64  // times the whole cache was given back
	// CgroupLimit is the process's cgroup memory limit (a Slurm job's --mem, a
	// container's limit) that the default cap is a quarter of; 0 if none.
	CgroupLimit int64
}

// CPUCache reports on the CPU tensor buffer cache.
func CPUCache() CPUCacheStats {
	var s CPUCacheStats
	var out [6]C.int64_t
	if C.captiongo_cpu_cache_stats(&out[0]) == 1 {
		s.CapBytes, s.CachedBytes, s.LiveBytes = int64(out[0]), int64(out[1]), int64(out[2])
		s.Hits, s.Misses, s.Emptied = int64(out[3]), int64(out[4]), int64(out[5])
	}
	s.CgroupLimit = int64(C.captiongo_cgroup_memory_limit())
	switch state := C.captiongo_cpu_cache_state(); state {
	case 0, 2: // on: the default cap, or CAPTIONGO_CPU_CACHE's
		from := "CAPTIONGO_CPU_CACHE"
		if state == 0 {
			of := "memory"
			if s.CgroupLimit > 0 && s.CgroupLimit/4 == s.CapBytes {
				of = fmt.Sprintf("this process's %d MiB cgroup memory limit", s.CgroupLimit>>20)
			}
			from = "a quarter of " + of + "; CAPTIONGO_CPU_CACHE=MiB sets it, 0 turns it off"
		}
		s.On, s.Why = true, fmt.Sprintf(
			"on: freed CPU tensor buffers of 64 KB or more are kept for reuse, up to %d MiB (%s)",
			s.CapBytes>>20,
			from,
		)
	case 1:
		s.Why = "off (CAPTIONGO_CPU_CACHE=0): every large CPU tensor is a fresh mmap, paid for in page faults"
	case 3:
		s.Why = fmt.Sprintf(
			"off: CAPTIONGO_CPU_CACHE=%q is not a whole number of MiB",
			os.Getenv("CAPTIONGO_CPU_CACHE"),
		)
	default:
		s.Why = "off: another allocator holds libtorch's CPU allocator slot"
	}
	return s
}

// EmptyCPUCache gives every cached CPU buffer back to the system.
func EmptyCPUCache() { C.captiongo_cpu_cache_empty() }

// memoryLimitFrom is the smallest cgroup memory limit that cgroupFile (in
// /proc/self/cgroup's format) names under root; 0 if none (tests).
func memoryLimitFrom(cgroupFile, root string) int64 {
	a, b := C.CString(cgroupFile), C.CString(root)
	defer C.free(unsafe.Pointer(a))
	defer C.free(unsafe.Pointer(b))
	return int64(C.captiongo_memory_limit_from(a, b))
}
