// c10d, the communication engine behind PyTorch's DistributedDataParallel, reached from Rust: a TCPStore
// rendezvous with the `env://` conventions and a Gloo process group (NCCL when the build has it), keyed exactly as
// `torch.distributed.init_process_group` keys its default group, so a suite rank and a PyTorch rank can join the
// same group. tch binds none of this; crates/core/src/dist/ffi.rs is the Rust side.
//
// Every entry point returns 0, or 1 with a message in `err`: no C++ exception crosses into Rust.
#include <ATen/ATen.h>

#include "guarded.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using suite::guarded;

struct Group {
  // The raw store (heartbeats and run-level keys live under their own prefix in it) and the group's backend.
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

std::vector<at::Tensor> tensors(void** ptrs, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor*>(ptrs[i]));
  return out;
}

c10d::Store& store_of(void* g) { return *static_cast<Group*>(g)->store; }

}  // namespace

extern "C" {

// Joins the group. `host_store` = this process runs the TCPStore server (rank 0 under plain `env://`; nobody
// under torchrun's agent store). `backend`: 0 Gloo, 1 NCCL.
int suite_dist_init(const char* addr, int port, int rank, int world, int host_store, long long timeout_ms, int backend,
                    void** out, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(port);
    opts.isServer = host_store != 0;
    opts.numWorkers = world;
    opts.waitWorkers = true;
    opts.timeout = timeout;
    opts.multiTenant = true;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
    // init_process_group: PrefixStore("default_pg") around the rendezvous store, then "<group name>/" for the
    // default group "0", then "<device>/" for its CPU backend.
    auto pg_store = c10::make_intrusive<c10d::PrefixStore>(
        "cpu/", c10::make_intrusive<c10d::PrefixStore>("0/", c10::make_intrusive<c10d::PrefixStore>("default_pg", store)));
    if (backend != 0) {
      throw std::runtime_error("this build of suite has no NCCL backend; use gloo");
    }
    auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, rank, world, options);
    pg->setSequenceNumberForGroup();
    *out = new Group{store, pg, timeout};
  });
}

void suite_dist_free(void* g) { delete static_cast<Group*>(g); }

// Sums each tensor across ranks in place: one collective per tensor (a gradient bucket), all in flight at once so
// Gloo's worker threads overlap them, then waits for all.
int suite_dist_allreduce_sum(void* g, void** ptrs, int n, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    auto ts = tensors(ptrs, n);
    auto* group = static_cast<Group*>(g);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(ts.size());
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      opts.timeout = group->timeout;
      works.push_back(group->backend->allreduce(one, opts));
    }
    for (auto& w : works) w->wait(group->timeout);
  });
}

// Copies `root`'s tensor into every rank's, in place, one tensor at a time.
int suite_dist_broadcast(void* g, void** ptrs, int n, int root, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(g);
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*static_cast<at::Tensor*>(ptrs[i])};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.timeout = group->timeout;
      group->backend->broadcast(one, opts)->wait(group->timeout);
    }
  });
}

int suite_dist_barrier(void* g, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(g);
    c10d::BarrierOptions opts;
    opts.timeout = group->timeout;
    group->backend->barrier(opts)->wait(group->timeout);
  });
}

// A second connection to the rendezvous store, for a thread of its own (heartbeats).
int suite_dist_store_clone(void* g, void** out, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(g);
    *out = new Group{group->store->clone(), {}, group->timeout};
  });
}

int suite_dist_store_set(void* g, const char* key, const unsigned char* value, long long len, char* err,
                         int err_len) {
  return guarded(err, err_len, [&] {
    store_of(g).set(std::string("suite/") + key, std::vector<uint8_t>(value, value + len));
  });
}

// Waits up to `timeout_ms` for `key`, then hands its value over (freed with suite_dist_bytes_free).
int suite_dist_store_get(void* g, const char* key, long long timeout_ms, unsigned char** value, long long* len,
                         char* err, int err_len) {
  return guarded(err, err_len, [&] {
    std::string k = std::string("suite/") + key;
    store_of(g).wait({k}, std::chrono::milliseconds(timeout_ms));
    auto v = store_of(g).get(k);
    *len = static_cast<long long>(v.size());
    *value = static_cast<unsigned char*>(std::malloc(v.size() + 1));
    if (!v.empty()) std::memcpy(*value, v.data(), v.size());
  });
}

void suite_dist_bytes_free(unsigned char* p) { std::free(p); }

// Sets `param.grad` (tch reads gradients but cannot set an undefined one).
int suite_dist_set_grad(void* param, void* grad, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    static_cast<at::Tensor*>(param)->mutable_grad() = *static_cast<at::Tensor*>(grad);
  });
}

}  // extern "C"
