// libtorch's own operator profiler (Kineto, CPU activities), the one `torch.profiler.profile` drives from Python:
// start it, run the work, stop it and save the Chrome trace. tch does not bind it. crates/core/src/profile.rs is the
// Rust side; `suite bench … --profile` compares the trace with the PyTorch side's, op by op.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>
#include <string>

#include "guarded.h"

namespace {

using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// What torch.profiler.profile(activities=[ProfilerActivity.CPU]) asks for: operator events with their input
// shapes off, no memory, stacks or FLOPs, so that the overhead is the same on both sides.
ProfilerConfig config() { return ProfilerConfig(ProfilerState::KINETO, false, false, false, false, false); }

std::set<ActivityType> activities(bool cuda) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (cuda) a.insert(ActivityType::CUDA);
  return a;
}

}  // namespace

extern "C" {

int suite_profiler_start(int cuda, char* err, int err_len) {
  return suite::guarded(err, err_len, [&] {
    torch::autograd::profiler::prepareProfiler(config(), activities(cuda != 0));
    torch::autograd::profiler::enableProfiler(config(), activities(cuda != 0));
  });
}

// Stops the profiler this thread started and writes its Chrome trace (JSON) to `path`.
int suite_profiler_stop(const char* path, char* err, int err_len) {
  return suite::guarded(err, err_len, [&] {
    auto result = torch::autograd::profiler::disableProfiler();
    if (!result) throw std::runtime_error("the profiler was not running");
    result->save(std::string(path));
  });
}

}  // extern "C"
