// The installed package as a host program sees it: `cmake --install` into a temporary
// prefix, the files there, libparallax.so's link needs and exports, then examples/hello
// and examples/decode built with find_package and examples/c_api/hello.c with pkg-config,
// all run. Without a GPU they must fail with one clear line; with one, succeed, and the
// decode example's output must equal, bit for bit, what this build's plx::Engine
// computes in-process for the same inputs and kernel. Tools come from the build's
// CMakeCache so the examples use the same cmake, ninja, compiler and CUDA toolkit as the
// library (where those paths do not exist, e.g. binaries carried to another machine, the
// ones on PATH).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "decode_example.hpp"
#include "runtime/driver.hpp"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

struct Run {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

// One prefix per test process, installed once and removed at exit.
struct Prefix {
  fs::path root;
  fs::path dir() const { return root / "prefix"; }
  Prefix() {
    std::string tmpl = "/tmp/plx-install-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root = tmpl;
  }
  ~Prefix() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }

  Run sh(const std::string& cmd) const {
    const fs::path log = root / "log.txt";
    const int status = std::system(("(" + cmd + ") >" + quote(log) + " 2>&1").c_str());
    Run r{WIFEXITED(status) ? WEXITSTATUS(status) : 128, slurp(log)};
    return r;
  }
};

// NAME:TYPE=VALUE from the build's CMakeCache.txt; empty when absent.
std::string cache_value(const std::string& name) {
  std::ifstream f(fs::path(PLX_BINARY_DIR) / "CMakeCache.txt");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(name + ":", 0) != 0) continue;
    const auto eq = line.find('=');
    if (eq != std::string::npos) return line.substr(eq + 1);
  }
  return "";
}

// A tool's path from the cache, or "" when absent or not on this machine.
std::string cached_tool(const std::string& name) {
  const std::string v = cache_value(name);
  return !v.empty() && fs::exists(v) ? v : "";
}

std::string cmake() {
  const std::string c = cached_tool("CMAKE_COMMAND");
  return c.empty() ? "cmake" : c;
}

const Prefix& installed() {
  static const Prefix p;
  static const Run install =
      p.sh(quote(cmake()) + " --install " + quote(PLX_BINARY_DIR) + " --prefix " + quote(p.dir()));
  INFO(install.out);
  REQUIRE(install.rc == 0);
  return p;
}

bool have(const char* tool) { return std::system(("command -v " + std::string(tool) + " >/dev/null 2>&1").c_str()) == 0; }

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

}  // namespace

TEST_CASE("cmake --install lays out library, headers, CLI, specs, package files", "[install]") {
  const fs::path p = installed().dir();
  for (const char* rel :
       {"lib/libparallax.so", "lib/libparallax.so.0", "lib/libparallax.so." PLX_VERSION,
        "include/parallax/parallax.hpp", "include/parallax/parallax.h", "include/parallax/errors.hpp",
        "include/parallax/types.hpp", "bin/plx", "lib/cmake/parallax/parallaxConfig.cmake",
        "lib/cmake/parallax/parallaxConfigVersion.cmake", "lib/pkgconfig/parallax.pc"}) {
    INFO(rel);
    CHECK(fs::exists(p / rel));
  }
  for (const auto& e : fs::directory_iterator(fs::path(PLX_SOURCE_DIR) / "specs")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path().filename());
    CHECK(fs::is_regular_file(p / "share/parallax-jit/specs" / e.path().filename()));
  }
}

TEST_CASE("installed libparallax.so links no libcuda and exports only the API", "[install]") {
  const Prefix& pre = installed();
  const fs::path lib = pre.dir() / "lib/libparallax.so";
  if (!have("readelf") || !have("nm")) {
    WARN("readelf/nm not found: link checks skipped");
    return;
  }
  const Run dyn = pre.sh("readelf -d " + quote(lib));
  REQUIRE(dyn.rc == 0);
  INFO(dyn.out);
  CHECK(dyn.out.find("[libcuda") == std::string::npos);   // dlopen'ed at run time
  CHECK(dyn.out.find("[libcudart") == std::string::npos);
  CHECK(dyn.out.find("[libnvrtc") != std::string::npos);
  CHECK(dyn.out.find("RUNPATH") != std::string::npos);     // finds libnvrtc in the toolkit

  const Run syms = pre.sh("nm -DC --defined-only " + quote(lib));
  REQUIRE(syms.rc == 0);
  INFO(syms.out.substr(0, 4000));
  CHECK(syms.out.find(" plx_engine_create") != std::string::npos);
  CHECK(syms.out.find(" plx_last_error") != std::string::npos);
  CHECK(syms.out.find(" plx::Engine::attention(") != std::string::npos);
  CHECK(syms.out.find("YAML::") == std::string::npos);  // static yaml-cpp stays private
  CHECK(syms.out.find(" fmt::") == std::string::npos);
}

TEST_CASE("installed parallax.hpp is self-contained C++17", "[install]") {
  const Prefix& pre = installed();
  std::string cxx = cache_value("CMAKE_CXX_COMPILER");
  if (cxx.empty()) cxx = "c++";
  std::ofstream(pre.root / "hdr.cpp") << "#include <parallax/parallax.hpp>\nint main() { return 0; }\n";
  const Run r = pre.sh(quote(cxx) + " -std=c++17 -Wall -Wextra -pedantic -fsyntax-only -I" +
                       quote(pre.dir() / "include") + " " + quote(pre.root / "hdr.cpp"));
  INFO(r.out);
  CHECK(r.rc == 0);
}

namespace {

// Configures and builds examples/NAME against the prefix; returns its build dir.
fs::path build_example(const Prefix& pre, const std::string& name) {
  const fs::path ex = pre.root / ("ex-" + name);
  std::string cfg = quote(cmake()) + " -S " + quote(fs::path(PLX_SOURCE_DIR) / "examples" / name) + " -B " +
                    quote(ex) + " -G Ninja -DCMAKE_PREFIX_PATH=" + quote(pre.dir());
  for (const char* var : {"CMAKE_MAKE_PROGRAM", "CMAKE_CXX_COMPILER"})
    if (const std::string v = cached_tool(var); !v.empty()) cfg += std::string(" -D") + var + "=" + quote(v);
  if (const std::string bin = cached_tool("CUDAToolkit_BIN_DIR"); !bin.empty())
    cfg += " -DCUDAToolkit_ROOT=" + quote(fs::path(bin).parent_path());
  const Run configure = pre.sh(cfg);
  INFO(configure.out);
  REQUIRE(configure.rc == 0);
  const Run build = pre.sh(quote(cmake()) + " --build " + quote(ex));
  INFO(build.out);
  REQUIRE(build.rc == 0);
  return ex;
}

}  // namespace

TEST_CASE("examples/hello (the README's C++ example) builds with find_package and runs", "[install]") {
  const Prefix& pre = installed();
  const fs::path ex = build_example(pre, "hello");
  const Run run = pre.sh("PLX_CACHE_DIR=" + quote(pre.root / "cache") + " " + quote(ex / "hello"));
  INFO(run.out);
  if (plx::cu::available()) {
    CHECK(run.rc == 0);
    CHECK(run.out.find(" runs plx_decode_parallax_bf16_d128") != std::string::npos);
  } else {
    CHECK(run.rc == 1);
    CHECK(lines(run.out) == 1);
    CHECK(run.out.find("driver") != std::string::npos);
  }
}

TEST_CASE("examples/decode builds against the installed package and runs", "[install]") {
  const Prefix& pre = installed();
  const fs::path ex = build_example(pre, "decode");

  for (const char* bad : {"--dump", "--bogus", "2 1024 4 5", "2 4 4", "0"}) {  // no GPU needed
    const Run r = pre.sh(quote(ex / "plx-decode") + " " + bad);
    INFO("plx-decode " << bad << "\n" << r.out);
    CHECK(r.rc == 1);
    CHECK(r.out.rfind("usage: plx-decode ", 0) == 0);
    CHECK(lines(r.out) == 1);
  }

  // Small shape and few steps: this is a smoke test, tools/bench measures.
  const int batch = 2, capacity = 1024, steps = 4;
  const fs::path dump = pre.root / "decode-o.bin", cache = pre.root / "cache";
  // PLX_TUNE unset: a tune inside the first call would run another variant than the one
  // the example prints.
  const Run run = pre.sh("cd " + quote(pre.root) + " && PLX_TUNE= PLX_CACHE_DIR=" + quote(cache) + " " +
                         quote(ex / "plx-decode") + " " + std::to_string(batch) + " " + std::to_string(capacity) +
                         " " + std::to_string(steps) + " --dump " + quote(dump));
  INFO(run.out);
  if (!plx::cu::available()) {
    CHECK(run.rc == 2);
    CHECK(lines(run.out) == 1);
    CHECK(run.out.rfind("plx-decode: no usable GPU: ", 0) == 0);
    CHECK(run.out.find("driver") != std::string::npos);
    CHECK(!fs::exists(dump));
    return;
  }
  REQUIRE(run.rc == 0);
  CHECK(run.out.find("us per step") != std::string::npos);
  const std::string tag = "variant: ";
  const auto at = run.out.find(tag);
  REQUIRE(at != std::string::npos);
  const std::string variant = run.out.substr(at + tag.size(), run.out.find(' ', at + tag.size()) - at - tag.size());
  CHECK(variant.rfind("plx_decode_parallax_bf16_d128", 0) == 0);

  // Bitwise equal to this build's engine running the same kernel on the same inputs, with
  // the example's cache directory (so the same tuning database).
  plx::EngineOptions opt;
  opt.cache_dir = cache;
  const auto engine = plx::testing::engine_decode_example(batch, capacity, variant, opt);
  CHECK(engine.chosen == variant);  // the example and the engine choose alike
  const std::vector<std::uint16_t>& want = engine.o;
  const std::string got = slurp(dump);
  REQUIRE(got.size() == want.size() * 2);
  std::size_t differ = 0, first = 0, nan = 0, nonzero = 0;
  std::uint16_t first_got = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    std::uint16_t x;
    std::memcpy(&x, got.data() + 2 * i, 2);
    if (x != want[i] && differ++ == 0) first = i, first_got = x;
    nan += (want[i] & 0x7f80u) == 0x7f80u;
    nonzero += (want[i] & 0x7fffu) != 0;
  }
  INFO("engine output: " << nan << " non-finite, " << nonzero << " non-zero of " << want.size());
  CHECK(nan == 0);
  CHECK(nonzero > 0);
  INFO(differ << " of " << want.size() << " elements differ; first at " << first << ": example "
                << decode_example::from_bf16(first_got) << ", engine " << decode_example::from_bf16(want[first]));
  CHECK(differ == 0);
  if (differ == 0)
    std::printf("examples/decode %d x %d, %d steps: %s, %zu bytes bitwise equal to plx::Engine\n", batch,
                capacity, steps, variant.c_str(), got.size());
}

TEST_CASE("a C program builds with pkg-config against the installed parallax.h", "[install]") {
  const Prefix& pre = installed();
  if (!have("pkg-config") || !have("cc")) {
    WARN("pkg-config or cc not found: C API build check skipped");
    return;
  }
  const std::string pc = "PKG_CONFIG_PATH=" + quote(pre.dir() / "lib/pkgconfig") + " pkg-config";
  const fs::path exe = pre.root / "plx-hello";
  // The README's command, verbatim but for the paths.
  const Run build = pre.sh("cc -std=c99 -Wall -Wextra -Werror " +
                           quote(fs::path(PLX_SOURCE_DIR) / "examples/c_api/hello.c") + " $(" + pc +
                           " --cflags --libs parallax) -Wl,-rpath,$(" + pc + " --variable=libdir parallax) -o " +
                           quote(exe));
  INFO(build.out);
  REQUIRE(build.rc == 0);
  const Run run = pre.sh("PLX_CACHE_DIR=" + quote(pre.root / "cache") + " " + quote(exe));
  INFO(run.out);
  if (plx::cu::available()) {
    CHECK(run.rc == 0);
  } else {
    CHECK(run.rc == 2);  // PLX_ERROR_NO_GPU
    CHECK(lines(run.out) == 1);
    CHECK(run.out.find("failed (2): ") != std::string::npos);  // plx_last_error is non-empty
    CHECK(run.out.find("driver") != std::string::npos);
  }
}

TEST_CASE("the installed plx renders the installed specs without a source tree", "[install]") {
  const Prefix& pre = installed();
  const Run r = pre.sh("cd " + quote(pre.root) + " && " + quote(pre.dir() / "bin/plx") + " gen " +
                       quote(pre.dir() / "share/parallax-jit/specs/decode_sm90.yaml") + " --out " +
                       quote(pre.root / "gen"));
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(fs::exists(pre.root / "gen"));
}
