// Activation checkpointing as PyTorch's reentrant `torch.utils.checkpoint(use_reentrant=True)`: a custom autograd
// Function whose forward runs a Rust closure without building a graph and keeps only its inputs, and whose
// backward runs the closure again with grad mode on and back-propagates through that fresh graph. tch binds no
// custom Functions, so the Rust side (crates/core/src/nn/checkpoint.rs) hands the closure over as a context
// pointer with a call and a drop function.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

// Runs the closure on `n` inputs (each a new `at::Tensor*` the callee takes ownership of) and stores a new
// `at::Tensor*` in `out`. Returns 0, or 1 with a message in `err`: no Rust panic crosses this boundary.
typedef int (*SuiteCallFn)(void* ctx, at::Tensor** inputs, int n, at::Tensor** out, char* err, int err_len);
// Frees the closure.
typedef void (*SuiteDropFn)(void* ctx);

namespace {

// Owns the Rust closure for as long as the autograd node lives: the node's saved data holds it in a capsule, so a
// graph freed after backward, or without one, drops the closure with it.
struct RustClosure : torch::CustomClassHolder {
  void* ctx;
  SuiteCallFn call_fn;
  SuiteDropFn drop_fn;
  RustClosure(void* c, SuiteCallFn call, SuiteDropFn drop) : ctx(c), call_fn(call), drop_fn(drop) {}
  RustClosure(const RustClosure&) = delete;
  RustClosure& operator=(const RustClosure&) = delete;
  ~RustClosure() override { drop_fn(ctx); }

  at::Tensor call(at::TensorList inputs) const {
    std::vector<at::Tensor*> owned;
    owned.reserve(inputs.size());
    for (const auto& t : inputs) owned.push_back(new at::Tensor(t));
    at::Tensor* out = nullptr;
    char err[1024] = {0};
    // The callee owns the inputs from here on, whatever it returns.
    int rc = call_fn(ctx, owned.data(), static_cast<int>(owned.size()), &out, err, sizeof(err));
    if (rc != 0) throw std::runtime_error(std::string("checkpointed closure failed: ") + err);
    at::Tensor result = *out;
    delete out;
    return result;
  }
};

// What the forward pass ran under, so the recomputation draws the same dropout masks under the same autocast.
struct ForwardState {
  at::Tensor cpu_rng;
  std::vector<std::pair<at::Device, at::Tensor>> device_rng;
  bool cpu_autocast, cuda_autocast, autocast_cache;
  at::ScalarType cpu_autocast_dtype, cuda_autocast_dtype;
};

std::set<c10::DeviceIndex> cuda_devices(at::TensorList inputs) {
  std::set<c10::DeviceIndex> devices;
  for (const auto& t : inputs) {
    if (t.defined() && t.is_cuda()) devices.insert(t.device().index());
  }
  return devices;
}

at::Tensor rng_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(at::Generator gen, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Sets the RNG states of `state` for its lifetime and puts back the ones it found, as `torch.random.fork_rng`:
// the recomputation must not shift the random stream of whatever runs after the backward pass.
struct ForkRng {
  at::Tensor cpu;
  std::vector<std::pair<at::Device, at::Tensor>> devices;
  explicit ForkRng(const ForwardState& s) {
    cpu = rng_state(at::detail::getDefaultCPUGenerator());
    for (const auto& [device, state] : s.device_rng) {
      const auto& gen = at::globalContext().defaultGenerator(device);
      devices.emplace_back(device, rng_state(gen));
      set_rng_state(gen, state);
    }
    set_rng_state(at::detail::getDefaultCPUGenerator(), s.cpu_rng);
  }
  ~ForkRng() {
    set_rng_state(at::detail::getDefaultCPUGenerator(), cpu);
    for (const auto& [device, state] : devices) set_rng_state(at::globalContext().defaultGenerator(device), state);
  }
};

// Sets the forward pass's autocast state for its lifetime (backward runs outside any autocast region).
struct AutocastAs {
  bool cpu, cuda, cache;
  at::ScalarType cpu_dtype, cuda_dtype;
  explicit AutocastAs(const ForwardState& s)
      : cpu(at::autocast::is_autocast_enabled(at::kCPU)),
        cuda(at::autocast::is_autocast_enabled(at::kCUDA)),
        cache(at::autocast::is_autocast_cache_enabled()),
        cpu_dtype(at::autocast::get_autocast_dtype(at::kCPU)),
        cuda_dtype(at::autocast::get_autocast_dtype(at::kCUDA)) {
    set(s.cpu_autocast, s.cuda_autocast, s.autocast_cache, s.cpu_autocast_dtype, s.cuda_autocast_dtype);
  }
  ~AutocastAs() { set(cpu, cuda, cache, cpu_dtype, cuda_dtype); }
  static void set(bool cpu, bool cuda, bool cache, at::ScalarType cpu_dtype, at::ScalarType cuda_dtype) {
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_cache_enabled(cache);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  }
};

struct ForwardStateHolder : torch::CustomClassHolder {
  ForwardState state;
};

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  // `inputs` may end with an anchor the closure does not see (see suite_checkpoint); `n_user` counts the others.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::TensorList inputs,
                            c10::intrusive_ptr<RustClosure> closure, int64_t n_user) {
    auto holder = c10::make_intrusive<ForwardStateHolder>();
    ForwardState& s = holder->state;
    s.cpu_rng = rng_state(at::detail::getDefaultCPUGenerator());
    for (auto index : cuda_devices(inputs)) {
      at::Device device(at::kCUDA, index);
      s.device_rng.emplace_back(device, rng_state(at::globalContext().defaultGenerator(device)));
    }
    s.cpu_autocast = at::autocast::is_autocast_enabled(at::kCPU);
    s.cuda_autocast = at::autocast::is_autocast_enabled(at::kCUDA);
    s.autocast_cache = at::autocast::is_autocast_cache_enabled();
    s.cpu_autocast_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    s.cuda_autocast_dtype = at::autocast::get_autocast_dtype(at::kCUDA);

    at::Tensor out = closure->call(inputs.slice(0, n_user));
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["closure"] = at::IValue::make_capsule(closure);
    ctx->saved_data["state"] = at::IValue::make_capsule(holder);
    ctx->saved_data["n_user"] = n_user;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    auto closure = c10::static_intrusive_pointer_cast<RustClosure>(ctx->saved_data["closure"].toCapsule());
    auto holder = c10::static_intrusive_pointer_cast<ForwardStateHolder>(ctx->saved_data["state"].toCapsule());
    int64_t n_user = ctx->saved_data["n_user"].toInt();

    std::vector<at::Tensor> detached;
    detached.reserve(saved.size());
    for (const auto& t : saved) {
      auto d = t.detach();
      d.set_requires_grad(t.requires_grad());
      detached.push_back(d);
    }
    at::Tensor out;
    {
      ForkRng rng(holder->state);
      AutocastAs autocast(holder->state);
      at::AutoGradMode grad(true);
      out = closure->call(at::TensorList(detached).slice(0, n_user));
    }
    // Nothing the closure used needs a gradient (a frozen block reached through the anchor): nothing to do.
    if (out.requires_grad()) torch::autograd::backward({out}, {grad_outputs[0]});

    torch::autograd::variable_list grads;
    for (const auto& d : detached) grads.push_back(d.requires_grad() ? d.grad() : at::Tensor());
    // No gradients for the closure and the count.
    grads.emplace_back();
    grads.emplace_back();
    return grads;
  }
};

}  // namespace

// The closure's result on `inputs`, through a Checkpoint node when grad mode is on. The closure is owned by this
// call from the start: it is dropped when the graph is (or before returning, without grad mode), on every path.
// Without grad mode, or when no input requires grad, the closure still runs exactly once here; in the second case
// an anchor (a scalar that requires grad) joins the inputs so the node is recorded and parameters the closure
// reaches on its own still receive gradients.
extern "C" int suite_checkpoint(at::Tensor** inputs, int n, void* ctx, SuiteCallFn call_fn, SuiteDropFn drop_fn,
                                at::Tensor** out, char* err, int err_len) {
  try {
    auto closure = c10::make_intrusive<RustClosure>(ctx, call_fn, drop_fn);
    std::vector<at::Tensor> xs;
    xs.reserve(n + 1);
    for (int i = 0; i < n; ++i) xs.push_back(*inputs[i]);
    at::Tensor result;
    if (!at::GradMode::is_enabled()) {
      result = closure->call(xs);
    } else {
      bool any = false;
      for (const auto& x : xs) any = any || (x.defined() && x.requires_grad());
      if (!any) xs.push_back(at::zeros({}, at::TensorOptions().dtype(at::kFloat)).set_requires_grad(true));
      result = Checkpoint::apply(at::TensorList(xs), closure, static_cast<int64_t>(n));
    }
    *out = new at::Tensor(result);
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = 0;
    return 1;
  }
}
