// plx doctor: what this machine offers parallax-jit, one line per item. It reports and
// never fails for a missing GPU: most of plx (gen, cache, a dry-run tune) needs none.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "args.hpp"
#include "commands.hpp"
#include "generator/render.hpp"
#include "paths.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx doctor

One line each: plx version, NVRTC version, CUDA driver, GPUs, compile cache directory
(and whether it is writable), embedded template headers, shipped specs found.
Exit 0 whether or not a GPU is present.
)";

// Writable = a file can be created there (the cache's own test would degrade silently).
std::string cache_state(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return fmt::format("not writable ({})", ec.message());
  std::string probe = (root / ".plx-doctor-XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) return fmt::format("not writable ({})", std::error_code(errno, std::generic_category()).message());
  ::close(fd);
  std::filesystem::remove(probe, ec);
  return "writable";
}

}  // namespace

int cmd_doctor(const std::vector<std::string>& argv) {
  const Args a = parse(argv, {}, "doctor");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (!a.positional.empty()) throw UsageError(fmt::format("doctor: unexpected argument '{}'", a.positional[0]));

  fmt::print("plx:       {}\n", PLX_VERSION);
  try {
    fmt::print("nvrtc:     {}\n", nvrtc_version());
  } catch (const std::exception& e) {
    fmt::print("nvrtc:     unavailable ({})\n", e.what());
  }
  std::string why;
  if (cu::available(&why)) {
    const int v = cu::api().driver_version;
    fmt::print("driver:    CUDA {}.{}\n", v / 1000, v % 1000 / 10);
    const int n = cu::Device::count();
    fmt::print("gpus:      {}\n", n);
    for (int i = 0; i < n; ++i) {
      try {
        cu::Device d(i);
        std::string arch;
        try {
          arch = d.arch_string();
        } catch (const std::exception&) {
          arch = fmt::format("sm_{}{} (unsupported)", d.cc_major(), d.cc_minor());
        }
        fmt::print("gpu {}:     {}, {}, {} SMs, smem opt-in {} B, L2 {} MiB\n", i, d.name(), arch, d.sm_count(),
                   d.max_smem_optin(), d.l2_bytes() >> 20);
      } catch (const std::exception& e) {
        fmt::print("gpu {}:     unusable ({})\n", i, e.what());
      }
    }
  } else {
    fmt::print("driver:    not available ({})\n", why);
    fmt::print("gpus:      0\n");
  }
  const auto root = KernelCache::default_root();
  fmt::print("cache:     {} ({}{})\n", root.string(), cache_state(root),
             std::getenv("PLX_CACHE_DIR") ? ", from PLX_CACHE_DIR" : "");
  fmt::print("templates: {} embedded headers\n", template_headers().size());
  if (auto spec = find_in_source("specs/decode_sm90.yaml")) {
    const auto dir = spec->parent_path();
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".yaml") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    fmt::print("specs:     {}: {}\n", dir.string(), fmt::join(names, " "));
  } else {
    fmt::print("specs:     not found (run from the source tree or set PLX_SOURCE_DIR)\n");
  }
  return 0;
}

}  // namespace plx::cli
