// Dynamic int8 quantization of linear layers through libtorch's own quantized kernels (fbgemm / oneDNN), as
// PyTorch's `torch.ao.quantization.quantize_dynamic`: `quantized::linear_prepack` packs an int8 weight (and the fp32
// bias) once, `quantized::linear_dynamic` quantizes each activation on the fly and runs the int8 GEMM. Both are
// TorchBind operators that tch does not bind, so they are called through the dispatcher here; the packed weight is
// a TorchBind object kept in an IValue. crates/core/src/quant.rs is the Rust side.
#include <ATen/ATen.h>

#include "guarded.h"
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>

#include <cstring>
#include <exception>
#include <string>

namespace {

using suite::guarded;

struct Packed {
  c10::IValue params;
};

// libtorch warns that its quantized-tensor constructors are deprecated (in favour of torchao, a Python package);
// the int8 kernels themselves are not, and a user cannot act on the warning, so it is kept off their terminal.
struct Silent : c10::WarningHandler {
  void process(const c10::Warning&) override {}
};

}  // namespace

extern "C" {

// Quantizes the fp32 weight [out, in] to qint8 with zero points 0 and `scales` (double: one per row, or a single
// one for per-tensor), then packs it with the optional fp32 bias.
int suite_qlinear_prepack(void* weight, void* scales, void* bias, void** out, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
    Silent silent;
    c10::WarningUtils::WarningHandlerGuard quiet(&silent);
    const auto& w = *static_cast<at::Tensor*>(weight);
    const auto& s = *static_cast<at::Tensor*>(scales);
    at::Tensor q = s.numel() == 1 && w.size(0) != 1
                       ? at::quantize_per_tensor(w, s.item<double>(), 0, at::kQInt8)
                       : at::quantize_per_channel(w, s, at::zeros({w.size(0)}, at::kLong), 0, at::kQInt8);
    torch::jit::Stack stack;
    stack.emplace_back(q);
    if (bias) {
      stack.emplace_back(*static_cast<at::Tensor*>(bias));
    } else {
      stack.emplace_back(c10::IValue());
    }
    op.callBoxed(&stack);
    *out = new Packed{stack.at(0)};
  });
}

// y = x·Wᵀ + b with W int8 and x quantized per call (`reduce_range`: 7-bit activations, as PyTorch's dynamic Linear
// on fbgemm).
int suite_qlinear_dynamic(void* packed, void* x, int reduce_range, void** out, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
    torch::jit::Stack stack;
    stack.emplace_back(*static_cast<at::Tensor*>(x));
    stack.emplace_back(static_cast<Packed*>(packed)->params);
    stack.emplace_back(reduce_range != 0);
    op.callBoxed(&stack);
    *out = new at::Tensor(stack.at(0).toTensor());
  });
}

// The int8 weight and bias back out of a packed weight (for saving and checks).
int suite_qlinear_unpack(void* packed, void** weight, void** bias, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_unpack", "");
    torch::jit::Stack stack;
    stack.emplace_back(static_cast<Packed*>(packed)->params);
    op.callBoxed(&stack);
    // The schema returns (Tensor W_origin, Tensor? B_origin): two stack entries.
    *weight = new at::Tensor(stack.at(0).toTensor());
    auto b = stack.at(1);
    *bias = b.isNone() ? nullptr : new at::Tensor(b.toTensor());
  });
}

void suite_qlinear_free(void* packed) { delete static_cast<Packed*>(packed); }

}  // extern "C"
