//go:build c10d

// c10d.cpp: the process group captiongo's ranks train over: c10d's TCPStore
// for the rendezvous and ProcessGroupGloo for the collectives, PyTorch's own
// classes from the libtorch captiongo links (gloo's headers come from Debian's
// libgloo-dev; the library itself is inside libtorch_cpu).
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {
struct group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int world;
};

char *dup(const std::string &s) {
  char *p = static_cast<char *>(malloc(s.size() + 1));
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

std::vector<at::Tensor> tensors(void **ts, int n) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor *>(ts[i]));
  return out;
}
}  // namespace

extern "C" void *captiongo_dist_new(const char *addr, int port, int rank, int world, int64_t timeout_ms,
                                    char **err) {
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    auto g = new group;
    g->world = world;
    g->store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
    return g;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// captiongo_dist_allreduce sums the tensors over the ranks (mean: then
// divides by the world size), in one flat buffer: every rank ends with the
// same bytes.
extern "C" int captiongo_dist_allreduce(void *gp, void **ts, int n, int mean, char **err) {
  auto g = static_cast<group *>(gp);
  try {
    at::NoGradGuard ng;
    auto xs = tensors(ts, n);
    std::vector<at::Tensor> flat;
    for (auto &x : xs) flat.push_back(x.reshape({-1}));
    std::vector<at::Tensor> buf{at::cat(flat)};
    g->pg->allreduce(buf)->wait();
    if (mean) buf[0].div_(g->world);
    int64_t off = 0;
    for (auto &x : xs) {
      auto k = x.numel();
      x.copy_(buf[0].narrow(0, off, k).view(x.sizes()));
      off += k;
    }
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return 1;
  }
}

// captiongo_dist_broadcast copies root's tensors into every rank's.
extern "C" int captiongo_dist_broadcast(void *gp, void **ts, int n, int root, char **err) {
  auto g = static_cast<group *>(gp);
  try {
    at::NoGradGuard ng;
    auto xs = tensors(ts, n);
    for (auto &x : xs) {
      // Gloo broadcasts contiguous tensors; the result is copied back.
      std::vector<at::Tensor> one{x.contiguous()};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      g->pg->broadcast(one, o)->wait();
      if (!one[0].is_same(x)) x.copy_(one[0]);
    }
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return 1;
  }
}

extern "C" int captiongo_dist_barrier(void *gp, char **err) {
  auto g = static_cast<group *>(gp);
  try {
    g->pg->barrier()->wait();
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return 1;
  }
}

extern "C" void captiongo_dist_free(void *gp) { delete static_cast<group *>(gp); }
