// cpucache.cpp: captiongo's allocator for CPU tensors, a cache of freed
// buffers by size class in front of libtorch's own (c10::alloc_cpu).
//
// libtorch's default CPU allocator hands every request to posix_memalign and
// every release to free. A training step allocates and frees the same large
// buffers each time (logits, their softmax and gradients: 50 MB each at batch
// 256 with a 2,600-word vocabulary; Inception's activations at 299 px), and
// glibc serves blocks that large with a fresh mmap and unmaps them on free, so
// every step pays again to fault those pages in, zeroed by the kernel. Measured
// on 2 cores: 836,000 page faults in 20 decoder steps at batch 256 without this
// cache, 37 with it, and 265 ms against 214 ms per step. glibc's own knobs do
// not cure it: with mmap and trimming off (M_MMAP_MAX = 0, M_TRIM_THRESHOLD =
// -1) glibc 2.36 still faults in about half of each 64 MB block again, because
// posix_memalign asks for alignment slack that a freed block of the same size
// does not have.
// (PyTorch's tuning guide recommends jemalloc or tcmalloc for the same cost.)
//
// Here a freed buffer of 64 KB or more goes to a free list of its size class
// (sizes rounded up by at most 12.5%) and a later request takes back the
// smallest cached buffer that fits it, if that is at most a quarter larger.
// The cache holds at most a cap of free bytes (a quarter of physical
// memory or of the process's cgroup memory limit, whichever is smaller, or
// CAPTIONGO_CPU_CACHE MiB; 0 turns it off); a request it cannot
// serve while that full first returns every cached buffer to the system, as
// PyTorch's CUDA caching allocator frees its cache before it gives up. Smaller
// requests go straight to libtorch's allocator.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/csrc/api/include/torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

// libtorch 2.3 made Allocator::allocate non-const and added copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define CAPTIONGO_ALLOC_CONST
#define CAPTIONGO_ALLOC_COPY_DATA 1
#else
#define CAPTIONGO_ALLOC_CONST const
#define CAPTIONGO_ALLOC_COPY_DATA 0
#endif

namespace {
constexpr size_t kMinCached = 64 << 10;

// size_class rounds n up to a multiple of an eighth of the largest power of
// two not above it (and of 4 KB): at most 12.5% more than asked.
size_t size_class(size_t n) {
  size_t p = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(n)));
  size_t step = std::max(p / 8, size_t(4096));
  return (n + step - 1) / step * step;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  explicit CachingCPUAllocator(size_t cap) : cap_(cap) {}

  c10::DataPtr allocate(size_t n) CAPTIONGO_ALLOC_CONST override {
    void *p = n == 0 ? nullptr : const_cast<CachingCPUAllocator *>(this)->get(n);
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
#if CAPTIONGO_ALLOC_COPY_DATA
  void copy_data(void *dest, const void *src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

  void stats(int64_t *out) {
    std::lock_guard<std::mutex> g(mu_);
    out[0] = static_cast<int64_t>(cap_);
    out[1] = static_cast<int64_t>(cached_);
    out[2] = static_cast<int64_t>(live_bytes_);
    out[3] = hits_;
    out[4] = misses_;
    out[5] = emptied_;
  }

  // empty returns every cached buffer to the system.
  void empty() {
    std::vector<void *> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto &kv : free_) out.insert(out.end(), kv.second.begin(), kv.second.end());
      free_.clear();
      cached_ = 0;
      emptied_++;
    }
    for (void *p : out) c10::free_cpu(p);
  }

 private:
  static void release(void *p);

  void *get(size_t n) {
    if (n < kMinCached) return c10::alloc_cpu(n);
    const size_t c = size_class(n);
    bool full = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      // The smallest cached class that fits, if it is at most a quarter larger:
      // captions padded to each batch's longest make neighbouring sizes.
      for (auto it = free_.lower_bound(c); it != free_.end() && it->first <= c + c / 4; ++it) {
        if (it->second.empty()) continue;
        void *p = it->second.back();
        it->second.pop_back();
        cached_ -= it->first;
        live_[p] = it->first;
        live_bytes_ += it->first;
        hits_++;
        return p;
      }
      misses_++;
      full = cached_ > 0 && cached_ + c > cap_;
    }
    if (full) empty();  // the cache holds other sizes: give them back first
    void *p;
    try {
      p = c10::alloc_cpu(c);
    } catch (...) {
      empty();  // out of memory: without the cache, once more
      p = c10::alloc_cpu(c);
    }
    std::lock_guard<std::mutex> g(mu_);
    live_[p] = c;
    live_bytes_ += c;
    return p;
  }

  void put(void *p) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        const size_t c = it->second;
        live_.erase(it);
        live_bytes_ -= c;
        if (cached_ + c <= cap_) {
          free_[c].push_back(p);
          cached_ += c;
          return;
        }
      }
    }
    c10::free_cpu(p);  // small, or over the cap
  }

  std::mutex mu_;
  const size_t cap_;
  size_t cached_ = 0, live_bytes_ = 0;
  int64_t hits_ = 0, misses_ = 0, emptied_ = 0;
  std::map<size_t, std::vector<void *>> free_;  // by class size
  std::unordered_map<void *, size_t> live_;
};

// read_limit reads a cgroup memory limit file: bytes, or 0 for "max", a value
// no machine has (cgroup v1's "unlimited" is 2^63 rounded down to a page), or
// anything unreadable.
size_t read_limit(const std::string &path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v) || v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return 0;
  errno = 0;
  unsigned long long b = std::strtoull(v.c_str(), nullptr, 10);
  if (errno != 0 || b >= (1ULL << 62)) return 0;
  return static_cast<size_t>(b);
}

// memory_limit is the smallest memory limit of this process's cgroups (v2
// memory.max, v1 memory.limit_in_bytes, the process's cgroup and each one
// above it), read from cgroup_file (/proc/self/cgroup) under root
// (/sys/fs/cgroup); 0 if there is none. A Slurm job's --mem and a container's
// memory limit show up here, and not in sysconf's physical memory.
size_t memory_limit(const std::string &cgroup_file, const std::string &root) {
  std::ifstream f(cgroup_file);
  std::string line;
  size_t best = 0;
  // The limit file of base+path and of each cgroup above it, up to base.
  auto consider = [&](const std::string &base, std::string path, const char *file) {
    for (;;) {
      size_t b = read_limit(base + path + "/" + file);
      if (b > 0 && (best == 0 || b < best)) best = b;
      if (path.empty()) break;
      path = path.substr(0, path.find_last_of('/'));
    }
  };
  while (std::getline(f, line)) {
    size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (!path.empty() && path.back() == '/') path.pop_back();
    if (line.compare(0, 2, "0:") == 0 && controllers.empty()) {
      consider(root, path, "memory.max");  // cgroup v2
    } else if ((',' + controllers + ',').find(",memory,") != std::string::npos) {
      consider(root + "/memory", path, "memory.limit_in_bytes");  // cgroup v1
    }
  }
  return best;
}

CachingCPUAllocator *the_cache = nullptr;  // never destroyed: tensors may outlive main
size_t cgroup_limit = 0;
int cache_state = 0;                       // see captiongo_cpu_cache_state

void CachingCPUAllocator::release(void *p) {
  if (p != nullptr) the_cache->put(p);
}

__attribute__((constructor)) void captiongo_install_cpu_cache() {
  size_t cap;
  const char *v = std::getenv("CAPTIONGO_CPU_CACHE");
  if (v != nullptr && *v != '\0') {
    char *end = nullptr;
    errno = 0;
    unsigned long long mib = std::strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || *v == '-') {
      cache_state = 3;  // not a number: off
      return;
    }
    if (mib == 0) {
      cache_state = 1;  // off on request
      return;
    }
    cap = static_cast<size_t>(mib) << 20;
    cache_state = 2;
  } else {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t mem = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : size_t(4) << 30;
    cgroup_limit = memory_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    if (cgroup_limit > 0 && cgroup_limit < mem) mem = cgroup_limit;
    cap = mem / 4;
    cache_state = 0;
  }
  the_cache = new CachingCPUAllocator(cap);
  c10::SetCPUAllocator(the_cache, /*priority=*/1);
}
}  // namespace

// captiongo_cpu_cache_state: 0 on (default cap), 1 off (CAPTIONGO_CPU_CACHE=0),
// 2 on (CAPTIONGO_CPU_CACHE cap), 3 off (CAPTIONGO_CPU_CACHE not a number),
// 4 installed but not in use (another allocator took libtorch's CPU slot).
extern "C" int captiongo_cpu_cache_state() {
  if (the_cache != nullptr && c10::GetCPUAllocator() != the_cache) return 4;
  return cache_state;
}

// captiongo_cpu_cache_stats fills out[6]: cap, cached (free) bytes, bytes in
// live cached-size buffers, hits, misses, times emptied. 0 if there is no cache.
extern "C" int captiongo_cpu_cache_stats(int64_t *out) {
  if (the_cache == nullptr) return 0;
  the_cache->stats(out);
  return 1;
}

// captiongo_cgroup_memory_limit is the cgroup memory limit the default cap
// was taken from (0: none, or the cap came from CAPTIONGO_CPU_CACHE).
extern "C" int64_t captiongo_cgroup_memory_limit() { return static_cast<int64_t>(cgroup_limit); }

// captiongo_memory_limit_from is memory_limit on other files (tests).
extern "C" int64_t captiongo_memory_limit_from(const char *cgroup_file, const char *root) {
  return static_cast<int64_t>(memory_limit(cgroup_file, root));
}

// captiongo_cpu_cache_empty returns every cached buffer to the system.
extern "C" void captiongo_cpu_cache_empty() {
  if (the_cache != nullptr) the_cache->empty();
}
