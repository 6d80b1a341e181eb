// Modes of libtorch's thread-local state that tch does not expose. Autocast: tch switches it on and off but not
// its dtype, which defaults to fp16 on CUDA; bf16 needs no loss scaling, so suite selects it here. Grad mode: tch
// sets it (`no_grad`) but cannot read it back.
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>

extern "C" int suite_grad_enabled() { return c10::GradMode::is_enabled() ? 1 : 0; }

extern "C" void suite_autocast_set_cuda_bf16(int bf16) {
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
}
