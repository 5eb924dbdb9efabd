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

#include <ATen/ATen.h>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

// captiongo_adam_step is torch.optim.Adam's update (PyTorch 2.1, L2 weight
// decay added to the gradient) over the n parameters that have a gradient, in
// place and without gradient. foreach = 0 is PyTorch's single-tensor Adam
// (its default for CPU tensors): a loop of a few ops per parameter. foreach = 1
// is its multi-tensor Adam (its default when every parameter is on CUDA):
// the same arithmetic as eight _foreach_* calls over all parameters, which on
// CUDA launch a handful of fused kernels instead of ~6 per parameter.
// gotch's in-place ops swap the tensor handle they are called on for a new
// one; doing the update here keeps every handle as it is.
// Returns 0, or 1 with *err set (malloc'd) on failure.
extern "C" int captiongo_adam_step(void **params, void **exp_avg, void **exp_avg_sq, int n, double lr,
                                   double beta1, double beta2, double eps, double weight_decay,
                                   int64_t step, int foreach, char **err) {
  try {
    c10::AutoGradMode no_grad(false);
    const double bc1 = 1 - std::pow(beta1, (double)step);
    const double bc2_sqrt = std::sqrt(1 - std::pow(beta2, (double)step));
    if (foreach) {
      std::vector<at::Tensor> P, G, M, V;
      for (int i = 0; i < n; i++) {
        at::Tensor &p = *static_cast<at::Tensor *>(params[i]);
        if (!p.grad().defined()) continue;
        P.push_back(p);
        G.push_back(p.grad());
        M.push_back(*static_cast<at::Tensor *>(exp_avg[i]));
        V.push_back(*static_cast<at::Tensor *>(exp_avg_sq[i]));
      }
      if (P.empty()) return 0;
      // torch.optim.adam._multi_tensor_adam, step for step.
      if (weight_decay != 0) G = at::_foreach_add(G, P, weight_decay);
      at::_foreach_lerp_(M, G, 1 - beta1);
      at::_foreach_mul_(V, beta2);
      at::_foreach_addcmul_(V, G, G, 1 - beta2);
      G.clear();
      std::vector<at::Scalar> bc2(P.size(), at::Scalar(bc2_sqrt)), step_size(P.size(), at::Scalar(-(lr / bc1)));
      std::vector<at::Tensor> denom = at::_foreach_sqrt(V);
      at::_foreach_div_(denom, bc2);
      at::_foreach_add_(denom, eps);
      at::_foreach_addcdiv_(P, M, denom, step_size);
      return 0;
    }
    for (int i = 0; i < n; i++) {
      at::Tensor &p = *static_cast<at::Tensor *>(params[i]);
      at::Tensor g = p.grad();
      if (!g.defined()) continue;
      if (weight_decay != 0) g = g.add(p, weight_decay);
      at::Tensor &m = *static_cast<at::Tensor *>(exp_avg[i]);
      at::Tensor &v = *static_cast<at::Tensor *>(exp_avg_sq[i]);
      m.lerp_(g, 1 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1 - beta2);
      at::Tensor denom = (v.sqrt() / bc2_sqrt).add_(eps);
      p.addcdiv_(m, denom, -lr / bc1);
    }
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return 1;
  }
  return 0;
}

// captiongo_zero_grad sets the parameters' gradients to None, as PyTorch 2's
// zero_grad(set_to_none=True): the next backward allocates them afresh.
extern "C" void captiongo_zero_grad(void **params, int n) {
  for (int i = 0; i < n; i++) {
    at::Tensor &p = *static_cast<at::Tensor *>(params[i]);
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

// captiongo_lstm_input_table returns a new tensor handle holding the first
// LSTM layer's input projection of every token, E W_ih^T + b_ih (V x 4H): with
// it a decoding step gathers its rows instead of running the embedding and
// that matrix product (what ATen's LSTM does for a whole known sequence with
// pre_compute_input). NULL with *err set on failure.
extern "C" void *captiongo_lstm_input_table(void *embed, void *w_ih, void *b_ih, char **err) {
  try {
    c10::AutoGradMode no_grad(false);
    return new at::Tensor(at::linear(*static_cast<at::Tensor *>(embed), *static_cast<at::Tensor *>(w_ih),
                                     *static_cast<at::Tensor *>(b_ih)));
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return nullptr;
  }
}

// captiongo_tensor_version is the tensor's version counter, which every
// in-place change (an optimiser step, loading weights) increments.
extern "C" int64_t captiongo_tensor_version(void *t) {
  return static_cast<int64_t>(static_cast<at::Tensor *>(t)->_version());
}

// lstm_step_logits runs one decoding step of the captioner's decoder:
// embedding of the fed tokens, one LSTM step (the state handles h and c are
// updated in place) and the output layer; it returns n x V logits. With an
// input table (one layer only) the step is ATen's LSTM cell with the input
// projection gathered from the table, in ATen's own order of operations.
static at::Tensor lstm_step_logits(void *embed, void *table, void **lstm_params, int n_params, int num_layers,
                                   void *lin_w, void *lin_b, void *h, void *c, const int64_t *tokens,
                                   int n) {
  const at::Tensor &E = *static_cast<at::Tensor *>(embed);
  at::Tensor &H = *static_cast<at::Tensor *>(h);
  at::Tensor &C = *static_cast<at::Tensor *>(c);
  const at::Tensor &W = *static_cast<at::Tensor *>(lin_w);
  const at::Tensor &B = *static_cast<at::Tensor *>(lin_b);
  if (table != nullptr && num_layers == 1) {
    const at::Tensor &T = *static_cast<at::Tensor *>(table);
    at::Tensor tk = at::from_blob(const_cast<int64_t *>(tokens), {n}, at::kLong).to(T.device());
    const at::Tensor &w_hh = *static_cast<at::Tensor *>(lstm_params[1]);
    const at::Tensor &b_hh = *static_cast<at::Tensor *>(lstm_params[3]);
    if (T.is_cuda()) {
      // ATen's CUDA LSTM cell: one fused kernel for the gates' sum, the
      // nonlinearities and the new state. b_ih is in the table and b_hh goes
      // into the hidden projection: the kernel adds biases only when given
      // both (given b_hh alone it silently leaves it out).
      auto r = at::_thnn_fused_lstm_cell(T.index_select(0, tk), at::linear(H.select(0, 0), w_hh, b_hh), C.select(0, 0));
      H = std::get<0>(r).unsqueeze(0);
      C = std::get<1>(r).unsqueeze(0);
      return at::linear(std::get<0>(r), W, B);
    }
    at::Tensor gates = at::linear(H.select(0, 0), w_hh, b_hh).add_(T.index_select(0, tk));
    auto g = gates.unsafe_chunk(4, 1);
    at::Tensor ingate = g[0].sigmoid_(), forgetgate = g[1].sigmoid_(), cellgate = g[2].tanh_(), outgate = g[3].sigmoid_();
    at::Tensor cy = (forgetgate * C.select(0, 0)).add_(ingate * cellgate);
    at::Tensor hy = outgate * cy.tanh();
    H = hy.unsqueeze(0);
    C = cy.unsqueeze(0);
    return at::linear(hy, W, B);
  }
  std::vector<at::Tensor> params;
  for (int i = 0; i < n_params; i++) params.push_back(*static_cast<at::Tensor *>(lstm_params[i]));
  at::Tensor tk = at::from_blob(const_cast<int64_t *>(tokens), {1, n}, at::kLong).to(E.device());
  auto r = at::lstm(at::embedding(E, tk), {H, C}, params, true, num_layers, 0.0, false, false, false);
  H = std::get<1>(r);
  C = std::get<2>(r);
  return at::linear(std::get<0>(r).squeeze(0), W, B);
}

// captiongo_lstm_greedy_step is one greedy decoding step of the captioner's
// decoder in a single call (lstm_step_logits, then the arg max); only the n
// chosen ids and their log-probabilities are copied out.
// gotch would create and register about a dozen tensor handles for the same.
extern "C" int captiongo_lstm_greedy_step(void *embed, void *table, void **lstm_params, int n_params, int num_layers,
                                          void *lin_w, void *lin_b, void *h, void *c,
                                          const int64_t *tokens, int n, int64_t *ids_out,
                                          float *logp_out, char **err) {
  try {
    c10::AutoGradMode no_grad(false);
    at::Tensor logits = lstm_step_logits(embed, table, lstm_params, n_params, num_layers, lin_w, lin_b, h, c, tokens, n);
    auto mx = logits.max(-1);
    at::Tensor v;
    if (logits.is_cuda()) {
      // On a GPU each operation costs a launch: log_softmax's one fused
      // kernel, then the value at the arg max.
      v = at::log_softmax(logits, -1).gather(-1, std::get<1>(mx).unsqueeze(-1)).squeeze(-1).to(at::kCPU).contiguous();
    } else {
      // log_softmax at the arg max = max - logsumexp = -log(sum(exp(x - max))),
      // reusing the max that logsumexp would compute again.
      v = (logits - std::get<0>(mx).unsqueeze(-1)).exp_().sum(-1).log_().neg_().to(at::kCPU).contiguous();
    }
    at::Tensor i = std::get<1>(mx).to(at::kCPU).contiguous();
    std::memcpy(ids_out, i.data_ptr<int64_t>(), sizeof(int64_t) * n);
    std::memcpy(logp_out, v.data_ptr<float>(), sizeof(float) * n);
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return 1;
  }
  return 0;
}

// captiongo_lstm_topk_step is captiongo_lstm_greedy_step for beam search: it
// returns each row's k best next tokens and their log-probabilities (n x k).
extern "C" int captiongo_lstm_topk_step(void *embed, void *table, void **lstm_params, int n_params, int num_layers,
                                        void *lin_w, void *lin_b, void *h, void *c,
                                        const int64_t *tokens, int n, int k, int64_t *ids_out,
                                        float *logp_out, char **err) {
  try {
    c10::AutoGradMode no_grad(false);
    at::Tensor logits = lstm_step_logits(embed, table, lstm_params, n_params, num_layers, lin_w, lin_b, h, c, tokens, n);
    auto tp = at::log_softmax(logits, -1).topk(k, -1, true, true);
    at::Tensor v = std::get<0>(tp).to(at::kCPU).contiguous();
    at::Tensor i = std::get<1>(tp).to(at::kCPU).contiguous();
    std::memcpy(ids_out, i.data_ptr<int64_t>(), sizeof(int64_t) * n * k);
    std::memcpy(logp_out, v.data_ptr<float>(), sizeof(float) * n * k);
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return 1;
  }
  return 0;
}

// captiongo_relu_ applies ReLU in place to the tensor behind the handle, as
// torchvision's BasicConv2d does (F.relu(x, inplace=True)); the handle stays.
extern "C" int captiongo_relu_(void *t, char **err) {
  try {
    static_cast<at::Tensor *>(t)->relu_();
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return 1;
  }
  return 0;
}

// captiongo_fold_bn folds an eval-mode BatchNorm into the bias-free
// convolution before it: with alpha = gamma / sqrt(var + eps) (what ATen's
// batch_norm computes in eval), conv(x, w) -> BN equals
// conv(x, w * alpha, beta - mean * alpha). New handles go to *wf and *bf.
extern "C" int captiongo_fold_bn(void *w, void *gamma, void *beta, void *mean, void *var, double eps,
                                 void **wf, void **bf, char **err) {
  try {
    c10::AutoGradMode no_grad(false);
    const at::Tensor &W = *static_cast<at::Tensor *>(w);
    at::Tensor alpha = *static_cast<at::Tensor *>(gamma) * (*static_cast<at::Tensor *>(var) + eps).rsqrt();
    *wf = new at::Tensor(W * alpha.reshape({-1, 1, 1, 1}));
    *bf = new at::Tensor(*static_cast<at::Tensor *>(beta) - *static_cast<at::Tensor *>(mean) * alpha);
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return 1;
  }
  return 0;
}
