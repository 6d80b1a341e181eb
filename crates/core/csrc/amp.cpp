// tch exposes autocast on/off but not its dtype, which defaults to fp16 on CUDA. bf16 needs no loss scaling, so
// suite selects it through this one-function shim.
#include <ATen/autocast_mode.h>

extern "C" void suite_autocast_set_cuda_bf16(int bf16) {
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
}
