// libtorch's fused AdamW kernel (one pass over each parameter: decay, both moments, bias correction and the update),
// which tch does not bind. On CPU it replaces the ~8 elementwise passes of the per-tensor formula; PyTorch's own
// AdamW uses it only with fused=True.
#include <ATen/ATen.h>
#include <cstring>
#include <vector>

extern "C" int suite_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                                 at::Tensor** exp_avg_sqs, at::Tensor** steps, int n, double lr, double beta1,
                                 double beta2, double weight_decay, double eps, char* err, int err_len) {
  try {
    std::vector<at::Tensor> p, g, m, v, s;
    p.reserve(n); g.reserve(n); m.reserve(n); v.reserve(n); s.reserve(n);
    for (int i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false, std::nullopt, std::nullopt);
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = 0;
    return 1;
  }
}

// `optimizer.zero_grad()` as PyTorch has done it by default since 2.0 (`set_to_none=True`): the gradients are
// dropped rather than filled with zeros, so the next backward pass hands its gradient over instead of adding it to
// zeros (one write and one read-add pass less per parameter per step), and a parameter without a gradient in a step
// is skipped by the optimizer, as in PyTorch. tch can only zero them.
extern "C" void suite_clear_grads(at::Tensor** params, int n) {
  for (int i = 0; i < n; ++i) params[i]->mutable_grad().reset();
}
