// helpers.cpp: the few libtorch calls captiongo needs that gotch v0.9.1 does not
// bind (thread count, build facts) or binds wrongly: gotch's AtGradSetEnabled
// reads the C int it gets back through an 8-byte Go int, so the previous grad
// mode it returns carries garbage in its upper bytes and reads as "off".
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/api/include/torch/version.h>

extern "C" int captiongo_cxx11_abi() {
#ifdef _GLIBCXX_USE_CXX11_ABI
  return _GLIBCXX_USE_CXX11_ABI;
#else
  return -1;
#endif
}

extern "C" const char *captiongo_torch_version() { return TORCH_VERSION; }

extern "C" int captiongo_get_num_threads() { return at::get_num_threads(); }

extern "C" void captiongo_set_num_threads(int n) { at::set_num_threads(n); }

// captiongo_grad_set_enabled sets this OS thread's grad mode and returns the previous one.
extern "C" int captiongo_grad_set_enabled(int on) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(on != 0);
  return prev ? 1 : 0;
}

extern "C" int captiongo_grad_enabled() { return c10::GradMode::is_enabled() ? 1 : 0; }

#include <ATen/Context.h>
#include <cstdint>
// captiongo_manual_seed seeds libtorch's default generators (torch.manual_seed).
extern "C" void captiongo_manual_seed(int64_t seed) { at::manual_seed(seed); }
