// Every failure a user can cause is one of these. The C API turns them into an error
// code plus plx_last_error(); the CLI into one line on stderr and a non-zero exit.
#pragma once
#include <stdexcept>
#include <string>

namespace plx {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A YAML spec that cannot be used; what() names file:line:col, key, value, expectation.
struct SpecError : Error {
  using Error::Error;
};

// A problem the kernels do not support (shape, dtype, GQA ratio, ...), before any launch.
struct UnsupportedError : Error {
  using Error::Error;
};

// NVRTC rejected a rendered source. log/options/excerpt are kept for tools.
struct CompileError : Error {
  CompileError(std::string msg, std::string log_, std::string options_, std::string excerpt_)
      : Error(std::move(msg)), log(std::move(log_)), options(std::move(options_)),
        excerpt(std::move(excerpt_)) {}
  std::string log, options, excerpt;
};

// A CUDA driver call failed (or no driver/GPU exists). call/result name the failure.
struct DriverError : Error {
  DriverError(std::string msg, std::string call_, int code_)
      : Error(std::move(msg)), call(std::move(call_)), code(code_) {}
  std::string call;
  int code;
};

// No usable CUDA driver or GPU on this machine.
struct NoGpuError : DriverError {
  using DriverError::DriverError;
};

// The on-disk cache or tuning database could not be used as intended.
struct CacheError : Error {
  using Error::Error;
};

}  // namespace plx
