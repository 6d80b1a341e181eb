// The error convention of the C shims that the Rust side calls: an entry point returns 0, or 1 with a message in
// its `err` buffer; no C++ exception crosses into Rust.
#pragma once

#include <cstring>
#include <exception>
#include <string>

namespace suite {

inline void fail(char* err, int len, const std::string& msg) {
  if (err && len > 0) {
    std::strncpy(err, msg.c_str(), static_cast<size_t>(len) - 1);
    err[len - 1] = 0;
  }
}

// Runs `f`, turning any exception into 1 and a message.
template <typename F>
int guarded(char* err, int len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    fail(err, len, e.what());
  } catch (...) {
    fail(err, len, "unknown C++ exception");
  }
  return 1;
}

}  // namespace suite
