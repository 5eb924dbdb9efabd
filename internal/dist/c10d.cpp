//go:build c10d

// c10d.cpp: the process group captiongo's ranks train over, PyTorch's own
// classes from the libtorch captiongo links: c10d's TCPStore for the
// rendezvous, ProcessGroupGloo (and ProcessGroupNCCL for CUDA tensors, the
// nccl tag) for the collectives, and DistributedDataParallel's Reducer for
// the gradients. Gloo's headers come from Debian's libgloo-dev; the library
// itself is inside libtorch_cpu.
#include <torch/torch.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef CAPTIONGO_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

// libtorch 2.1's c10d API (the version captiongo is built on) or a later one's
// (checked against 2.11's headers, the GPU machines' torch).
#define CAPTIONGO_TORCH_2_1 (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR <= 1)

#include <chrono>
#include <cstring>
#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <unordered_map>
#include <string>
#include <vector>

#ifdef CAPTIONGO_NCCL
#define CAPTIONGO_CUDA_BACKEND "nccl"
#else
#define CAPTIONGO_CUDA_BACKEND "gloo"
#endif

namespace {
struct group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  c10::intrusive_ptr<c10d::ProcessGroup> wrap;  // the ProcessGroup over pg (and NCCL), as torch.distributed's
  int world;
  int device;  // this rank's CUDA device, -1 on CPU
};

char *dup(const std::string &s) {
  char *p = static_cast<char *>(malloc(s.size() + 1));
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// sumHook is the Reducer's communication hook: the bucket summed over the
// ranks, not divided by the world size (libtorch's own such hook,
// _AllReduceBySumCommHook, is not exported).
class sumHook : public c10d::CppCommHookInterface<c10::intrusive_ptr<c10d::ProcessGroup>> {
 public:
  explicit sumHook(const c10::intrusive_ptr<c10d::ProcessGroup> &pg)
      : c10d::CppCommHookInterface<c10::intrusive_ptr<c10d::ProcessGroup>>(pg) {}
  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket &bucket) override {
    std::vector<at::Tensor> t{bucket.getBufferRef()};
    return state_->allreduce(t)->getFuture();
  }
};

std::vector<at::Tensor> tensors(void **ts, int n) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor *>(ts[i]));
  return out;
}
}  // namespace

// captiongo_dist_new joins the group: rank 0 serves the store. CPU tensors'
// collectives run on Gloo; with a CUDA device (cuda_device >= 0, this
// rank's GPU) CUDA tensors' run on NCCL when this build has it (the nccl tag),
// else on Gloo (staged through the host).
extern "C" void *captiongo_dist_new(const char *addr, int port, int rank, int world, int64_t timeout_ms,
                                    int cuda_device, char **err) {
  bool cuda = cuda_device >= 0;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    std::unique_ptr<group> g(new group);
    g->world = world;
    g->device = cuda_device;
    g->store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    // Each backend keeps its keys under a prefix of its own, as torch.distributed's do.
    auto prefixed = [&](const char *p) { return c10::make_intrusive<c10d::PrefixStore>(p, g->store); };
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed("cpu/"), rank, world, opts);
    // As torch.distributed does: a ProcessGroup with a backend per device type.
#if CAPTIONGO_TORCH_2_1
    auto popts = c10::make_intrusive<c10d::ProcessGroup::Options>(cuda ? CAPTIONGO_CUDA_BACKEND : "gloo",
                                                                  std::chrono::milliseconds(timeout_ms));
    g->wrap = c10::make_intrusive<c10d::ProcessGroup>(g->store, rank, world, popts);
#else
    g->wrap = c10::make_intrusive<c10d::ProcessGroup>(g->store, rank, world);
    g->wrap->setDefaultBackend(cuda ? CAPTIONGO_CUDA_BACKEND : "gloo");
#endif
    g->wrap->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, g->pg);
    if (cuda) {
#ifdef CAPTIONGO_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = std::chrono::milliseconds(timeout_ms);
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed("cuda/"), rank, world, nopts);
      g->wrap->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
#else
      g->wrap->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, g->pg);
#endif
    }
    return g.release();
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
    g->wrap->allreduce(buf)->wait();
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
      g->wrap->broadcast(one, o)->wait();
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
    c10d::BarrierOptions o;
#ifdef CAPTIONGO_NCCL
    if (g->device >= 0) o.device_ids = {g->device};  // NCCL's barrier runs on this rank's GPU
#endif
    g->wrap->barrier(o)->wait();
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return 1;
  }
}

extern "C" void captiongo_dist_free(void *gp) { delete static_cast<group *>(gp); }

// captiongo_dist_reducer_new makes DistributedDataParallel's gradient
// reducer over the parameters: autograd hooks copy each gradient into its
// bucket as backward produces it, and a full bucket's allreduce starts on
// Gloo's threads while backward goes on; at the end of backward the summed
// buckets are copied into the gradients. Buckets as DDP makes them: one
// until the first backward, then rebuilt in the order gradients arrived (a
// first bucket of first_bytes, then bucket_bytes each). The communication
// hook sums without dividing by the world size (captiongo's ranks weight
// their losses so that the sum is the one-process gradient).
extern "C" void *captiongo_dist_reducer_new(void *gp, void **ps, int n, int64_t bucket_bytes, int64_t first_bytes,
                                            char **err) {
  auto g = static_cast<group *>(gp);
  try {
    auto params = tensors(ps, n);
    std::vector<bool> sparse(params.size(), false);
    auto assigned = c10d::compute_bucket_assignment_by_size(params, {SIZE_MAX}, sparse);
    auto buckets = std::get<0>(assigned);
    auto limits = std::get<1>(assigned);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    std::unordered_map<size_t, std::string> names;
#if CAPTIONGO_TORCH_2_1
    auto r = new c10d::Reducer(params, buckets, limits, g->wrap, sparse, bucket_bytes, false, false, names,
                               first_bytes);
#else
    (void)limits;
    auto r = new c10d::Reducer(params, buckets, g->wrap, sparse, bucket_bytes, false, false, names, first_bytes,
                               false, false, {});
#endif
    r->register_comm_hook(std::make_unique<sumHook>(g->wrap));
    return r;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// captiongo_dist_reducer_prepare readies the reducer for the next backward
// (rebuilding its buckets after the first one: a broadcast of rank 0's
// order). Every rank calls it before every backward.
extern "C" int captiongo_dist_reducer_prepare(void *rp, char **err) {
  auto r = static_cast<c10d::Reducer *>(rp);
  try {
    r->rebuild_buckets();
    r->prepare_for_backward({});
    return 0;
  } catch (const std::exception &e) {
    *err = dup(e.what());
    return 1;
  }
}

extern "C" void captiongo_dist_reducer_free(void *rp) {
  try {
    delete static_cast<c10d::Reducer *>(rp);
  } catch (...) {  // ~Reducer may throw (noexcept(false)); the run is ending
  }
}
