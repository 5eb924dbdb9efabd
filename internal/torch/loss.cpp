// loss.cpp: the captioner's training loss, softmax cross-entropy over the
// vocabulary averaged over the tokens that are not <PAD>, as one autograd node.
//
// PyTorch's cross_entropy is log_softmax, then nll_loss: two nodes whose
// backward pass writes a zeroed N x V gradient, scatters -1/n into it, then
// reads it and the saved log-probabilities again to form softmax - one-hot. The
// gradient is known in closed form, ((softmax(x) - onehot(t)) / n on kept rows,
// zero on ignored ones), so this node forms it in the forward pass, in the
// softmax's own buffer, and its backward pass hands it on (times the incoming
// gradient when that is not 1). At batch 256, 19 steps and a 2,600-word
// vocabulary that N x V is 50 MB, and the node saves three passes over it.
//
// CPU only: on CUDA those passes cost microseconds and PyTorch's own op is used
// (captiongo_cross_entropy falls back to it there).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <exception>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A probability below this is recomputed from the logits: -log(p) of a float
// softmax loses its precision as p nears the smallest normal float (1e-38).
constexpr double kTiny = 1e-30;

struct SoftmaxCrossEntropy : public torch::autograd::Function<SoftmaxCrossEntropy> {
  // logits N x V (floating), target N (int64), keep = target != ignore_index,
  // n = number of kept rows (> 0).
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &logits, const at::Tensor &target,
                            const at::Tensor &keep, int64_t n) {
    at::Tensor safe = at::where(keep, target, at::zeros({}, target.options()));  // ignored rows read column 0
    at::Tensor p = at::_softmax(logits, 1, false);
    at::Tensor nll = p.gather(1, safe.unsqueeze(1)).squeeze(1).log_().neg_();
    at::Tensor bad = keep.logical_and(nll.gt(-std::log(kTiny)));
    if (bad.any().item<bool>()) {
      at::Tensor idx = bad.nonzero().squeeze(1);
      at::Tensor rows = logits.index_select(0, idx);
      nll.index_put_({idx}, at::logsumexp(rows, {1}).sub_(rows.gather(1, safe.index_select(0, idx).unsqueeze(1)).squeeze(1)));
    }
    at::Tensor loss = nll.masked_fill_(keep.logical_not(), 0).sum().div_(static_cast<double>(n));
    if (logits.requires_grad()) {
      const int64_t V = logits.size(1);
      at::Tensor flat = at::arange(logits.size(0), safe.options()).mul_(V).add_(safe);
      p.view({-1}).index_put_({flat}, at::scalar_tensor(-1.0, p.options()), /*accumulate=*/true);
      p.mul_(keep.to(p.scalar_type()).div_(static_cast<double>(n)).unsqueeze(1));  // ignored rows become 0
      ctx->saved_data["grad"] = p;
    }
    return loss;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_out) {
    at::Tensor g = ctx->saved_data["grad"].toTensor();
    ctx->saved_data.erase("grad");
    const at::Tensor &go = grad_out[0];
    if (!(go.device().is_cpu() && go.item<double>() == 1.0)) g = g.mul(go);
    return {g, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

// captiongo_cross_entropy is cross_entropy(logits, target, ignore_index,
// reduction = mean) for logits N x V and int64 targets N; NULL with *err set on
// failure. All rows ignored gives NaN, as PyTorch's does.
extern "C" void *captiongo_cross_entropy(void *logits, void *target, int64_t ignore_index, char **err) {
  try {
    const at::Tensor &x = *static_cast<at::Tensor *>(logits);
    const at::Tensor &t = *static_cast<at::Tensor *>(target);
    TORCH_CHECK(x.dim() == 2 && t.dim() == 1 && x.size(0) == t.size(0), "cross entropy: logits ", x.sizes(),
                " and targets ", t.sizes(), " do not match (want N x V and N)");
    if (x.is_cpu() && x.is_floating_point() && t.scalar_type() == at::kLong && x.size(0) > 0) {
      at::Tensor keep = t.ne(ignore_index);
      int64_t n = keep.sum().item<int64_t>();
      if (n > 0) return new at::Tensor(SoftmaxCrossEntropy::apply(x.contiguous(), t, keep, n));
    }
    return new at::Tensor(at::cross_entropy_loss(x, t, {}, at::Reduction::Mean, ignore_index, 0.0));
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return nullptr;
  }
}
