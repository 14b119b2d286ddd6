// The compile cache without a GPU: SHA-256 vectors, file primitives, the manifest key,
// and the disk cache under races, killed writers, corruption and unwritable directories.
// `build` is a fake that returns a deterministic pseudo-cubin and appends one byte per
// run to a counter file (O_APPEND, so counts from many processes add up).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "common/sha256.hpp"
#include "runtime/kernel_cache.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using plx::testing::TempDir;
using plx::CompiledKernel;
using plx::KernelCache;
using plx::Manifest;

namespace {

Manifest base_manifest() {
  Manifest m;
  m.variant_name = "plx_decode_parallax_bf16_d128_g4_n64_s3_w4_split-auto_sm90a";
  m.source = "#include <plx/decode.cuh>\n"
             "template __global__ void plx::decode_kernel<128, 4, 64, 3, 4>(plx::DecodeArgs);\n";
  m.headers = {{"plx/decode.cuh", "// decode\n#pragma once\n#include <plx/softmax.cuh>\n"},
               {"plx/softmax.cuh", "// online softmax\n#pragma once\n"}};
  m.nvrtc_version = "12.8";
  m.options = {"--gpu-architecture=sm_90a", "-std=c++20", "-default-device"};
  m.arch = "sm_90a";
  m.generator_version = "0.1.0";
  return m;
}

Manifest other_manifest(int i) {
  Manifest m = base_manifest();
  m.variant_name += "_v" + std::to_string(i);
  m.source += "// variant " + std::to_string(i) + "\n";
  return m;
}

// Binary, deterministic, different per key; contains NUL bytes like a real cubin.
CompiledKernel fake_kernel(const std::string& key) {
  CompiledKernel k;
  for (int i = 0; k.cubin.size() < 3000; ++i) {
    auto d = plx::Sha256().update(key).update(std::to_string(i)).digest();
    k.cubin.append(reinterpret_cast<const char*>(d.data()), d.size());
  }
  k.cubin[7] = '\0';
  k.lowered_name = "_ZN3plx13decode_kernelILi128ELi4EEEvNS_10DecodeArgsE";
  k.log = "ptxas info    : Used 96 registers, 16 bytes stack frame\n\"quoted\"\t\xc3\xa9";
  k.registers = 96;
  k.spill_bytes = 0;
  k.stack_bytes = 16;
  k.static_smem = 4096;
  return k;
}

void append_byte(const fs::path& counter) {
  int fd = ::open(counter.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "b", 1) == 1);
  ::close(fd);
}

std::size_t count_builds(const fs::path& counter) {
  std::error_code ec;
  auto n = fs::file_size(counter, ec);
  return ec ? 0 : static_cast<std::size_t>(n);
}

// The fake `build`: counts, optionally sleeps (to widen races), returns the fake kernel.
std::function<CompiledKernel()> fake_build(const fs::path& counter, const Manifest& m,
                                           int sleep_ms = 0) {
  return [counter, key = m.key(), sleep_ms] {
    append_byte(counter);
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    return fake_kernel(key);
  };
}

struct Warnings {
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& s) { lines.push_back(s); };
  }
  bool any_contains(const std::string& s) const {
    for (const auto& l : lines)
      if (l.find(s) != std::string::npos) return true;
    return false;
  }
};

// Waits for a child; kills it after timeout_ms. Returns its exit code, or -1 on timeout or
// death by signal.
int wait_child(pid_t pid, int timeout_ms = 30000) {
  for (int waited = 0;; waited += 5) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (waited >= timeout_ms) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    ::usleep(5000);
  }
}

// Runs fn in a forked child (so a deadlock shows up as a timeout, not a hung test).
int run_in_child(const std::function<int()>& fn, int timeout_ms = 30000) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  return wait_child(pid, timeout_ms);
}

bool read_byte_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  char c;
  return ::read(fd, &c, 1) == 1;
}

std::size_t count_subdirs(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

void overwrite(const fs::path& p, const std::string& bytes) {
  fs::remove(p);
  plx::write_file_durable(p, bytes);
}

std::string slurp(const fs::path& p) { return plx::read_file(p).value_or("<missing>"); }

struct FaultHookGuard {
  explicit FaultHookGuard(plx::WriteFaultHook h) { plx::set_write_fault_hook_for_testing(std::move(h)); }
  ~FaultHookGuard() { plx::set_write_fault_hook_for_testing(nullptr); }
};

}  // namespace

// =======================================================================================
// SHA-256

TEST_CASE("sha256: FIPS 180-4 test vectors", "[sha256]") {
  CHECK(plx::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(plx::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(plx::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(plx::sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                        "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(plx::sha256_hex(std::string(1'000'000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: incremental updates equal one shot at every split", "[sha256]") {
  std::string msg;
  for (int i = 0; i < 300; ++i) msg += static_cast<char>(i * 37 + 11);
  for (std::size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300}) {
    std::string part = msg.substr(0, len);
    const std::string want = plx::sha256_hex(part);
    for (std::size_t cut = 0; cut <= len; ++cut) {
      plx::Sha256 h;
      h.update(part.substr(0, cut)).update(part.substr(cut));
      REQUIRE(h.hex_digest() == want);
    }
    plx::Sha256 bytewise;
    for (char c : part) bytewise.update(&c, 1);
    REQUIRE(bytewise.hex_digest() == want);
  }
  plx::Sha256 h;
  h.update("abc");
  h.digest();
  h.reset();
  CHECK(h.update("abc").hex_digest() == plx::sha256_hex("abc"));
}

// =======================================================================================
// File primitives

TEST_CASE("fs: write_file_atomic replaces content and leaves no temp files", "[fs]") {
  TempDir t;
  fs::path p = t / "db.json";
  plx::write_file_atomic(p, "first");
  plx::write_file_atomic(p, std::string("second\0with nul", 15));
  CHECK(slurp(p) == std::string("second\0with nul", 15));
  CHECK(count_subdirs(t.path) == 1);
  {
    FaultHookGuard full([](const fs::path&) { return ENOSPC; });
    try {
      plx::write_file_atomic(p, "third");
      FAIL("expected IoError");
    } catch (const plx::IoError& e) {
      CHECK(e.error_code == ENOSPC);
      CHECK(std::string(e.what()).find("No space left") != std::string::npos);
    }
  }
  CHECK(slurp(p) == std::string("second\0with nul", 15));  // old content intact
  CHECK(count_subdirs(t.path) == 1);                        // temp file removed
  CHECK_THROWS_AS(plx::write_file_atomic(t / "no/such/dir/f", "x"), plx::IoError);
}

TEST_CASE("fs: read_file treats missing and non-regular files as absent", "[fs]") {
  TempDir t;
  CHECK_FALSE(plx::read_file(t / "missing"));
  CHECK_FALSE(plx::read_file(t.path));  // a directory
  plx::write_file_durable(t / "empty", "");
  CHECK(plx::read_file(t / "empty") == std::string());
  std::string big(300'000, 'x');
  big[5] = '\0';
  plx::write_file_durable(t / "big", big);
  CHECK(plx::read_file(t / "big") == big);
  CHECK_THROWS_AS(plx::write_file_durable(t / "big", "again"), plx::IoError);  // O_EXCL
}

TEST_CASE("fs: FileLock excludes threads of this process and other processes", "[fs]") {
  TempDir t;
  fs::path lock = t / "k.lock";
  {
    plx::FileLock held(lock);
    CHECK_FALSE(plx::FileLock::try_lock(lock));  // OFD: a second description conflicts
    CHECK(run_in_child([&] { return plx::FileLock::try_lock(lock) ? 1 : 0; }) == 0);
  }
  CHECK(plx::FileLock::try_lock(lock));
}

TEST_CASE("fs: a SIGKILLed holder releases the lock", "[fs]") {
  TempDir t;
  fs::path lock = t / "k.lock";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    plx::FileLock held(lock);
    [[maybe_unused]] auto n = ::write(fds[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  REQUIRE(read_byte_within(fds[0], 10000));
  ::close(fds[0]);
  CHECK_FALSE(plx::FileLock::try_lock(lock));
  ::kill(pid, SIGKILL);
  wait_child(pid);
  // Blocking acquisition in a child, so a bug shows as a timeout rather than a hang.
  CHECK(run_in_child([&] { plx::FileLock again(lock); return 0; }, 10000) == 0);
}

TEST_CASE("fs: FileLock follows a lock file deleted and recreated while waiting", "[fs]") {
  TempDir t;
  fs::path lock = t / "k.lock";
  auto first = std::make_unique<plx::FileLock>(lock);
  std::atomic<bool> acquired{false}, release{false};
  std::thread waiter([&] {
    plx::FileLock second(lock);  // opens the current file, then blocks
    acquired = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(acquired);
  fs::remove(lock);  // e.g. `plx cache clear` while both wait
  first.reset();     // the waiter now locks the unlinked inode, notices, and retries
  for (int i = 0; i < 1000 && !acquired; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(acquired);
  CHECK(fs::exists(lock));                      // it re-created the file ...
  CHECK_FALSE(plx::FileLock::try_lock(lock));   // ... and holds the lock on it
  release = true;
  waiter.join();
}

// =======================================================================================
// Manifest and key

TEST_CASE("manifest: the key changes with every field", "[cache][key]") {
  const Manifest base = base_manifest();
  const std::string k0 = base.key();
  CHECK(k0.size() == 64);
  CHECK(k0 == plx::sha256_hex(base.canonical()));
  CHECK(k0 == base_manifest().key());  // stable
  std::vector<std::pair<std::string, std::function<void(Manifest&)>>> edits = {
      {"variant name", [](Manifest& m) { m.variant_name += "x"; }},
      {"source", [](Manifest& m) { m.source += " "; }},
      {"one header's content", [](Manifest& m) { m.headers["plx/softmax.cuh"] += "\n"; }},
      {"a header added", [](Manifest& m) { m.headers["plx/extra.cuh"] = ""; }},
      {"a header renamed", [](Manifest& m) {
         m.headers["plx/softmax2.cuh"] = m.headers["plx/softmax.cuh"];
         m.headers.erase("plx/softmax.cuh");
       }},
      {"nvrtc version", [](Manifest& m) { m.nvrtc_version = "13.0"; }},
      {"an option added", [](Manifest& m) { m.options.push_back("-lineinfo"); }},
      {"an option changed", [](Manifest& m) { m.options[1] = "-std=c++17"; }},
      {"option order", [](Manifest& m) { std::swap(m.options[0], m.options[1]); }},
      {"arch", [](Manifest& m) { m.arch = "sm_90"; }},
      {"generator version", [](Manifest& m) { m.generator_version = "0.1.1"; }},
      // Length prefixes: moving bytes from one field to the next changes the key.
      {"field boundary", [](Manifest& m) {
         m.variant_name.pop_back();
         m.source = "a" + m.source;
       }},
      {"option split", [](Manifest& m) {
         m.options = {"--gpu-architecture=sm_90a -std=c++20", "-default-device"};
       }},
  };
  std::set<std::string> keys{k0};
  for (auto& [what, edit] : edits) {
    INFO(what);
    Manifest m = base;
    edit(m);
    CHECK(m.key() != k0);
    CHECK(keys.insert(m.key()).second);  // and every change gives its own key
  }
}

TEST_CASE("manifest: header order does not change the key", "[cache][key]") {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"plx/a.cuh", "A"}, {"plx/b.cuh", "B"}, {"plx/c.cuh", "C"}};
  Manifest forward = base_manifest(), backward = base_manifest();
  forward.headers.clear();
  backward.headers.clear();
  for (auto it = headers.begin(); it != headers.end(); ++it) forward.headers.insert(*it);
  for (auto it = headers.rbegin(); it != headers.rend(); ++it) backward.headers.insert(*it);
  CHECK(forward.key() == backward.key());
  CHECK(forward.canonical().find("plx/a.cuh") < forward.canonical().find("plx/c.cuh"));
  CHECK(forward.canonical().find("\nA") == std::string::npos);  // headers by hash, not text
}

TEST_CASE("manifest: canonical_options sorts and dedupes", "[cache][key]") {
  CHECK(Manifest::canonical_options({"-lineinfo", "-O3", "-lineinfo", "--use_fast_math"}) ==
        std::vector<std::string>{"--use_fast_math", "-O3", "-lineinfo"});
}

// =======================================================================================
// get_or_build

TEST_CASE("cache: round trip through memory and disk", "[cache]") {
  TempDir t;
  const fs::path counter = t / "builds";
  const Manifest m = base_manifest();
  const CompiledKernel want = fake_kernel(m.key());
  fs::path root = t / "cache";
  {
    KernelCache cache(root);
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == want);
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == want);
    CHECK(count_builds(counter) == 1);
    auto s = cache.stats();
    CHECK(s.builds == 1);
    CHECK(s.memory_hits == 1);
    CHECK(s.disk_hits == 0);
    CHECK(s.quarantines == 0);
    CHECK_FALSE(cache.memory_only());
  }
  // Layout: <root>/v1/<arch>/<key[0:2]>/<key>/
  const std::string key = m.key();
  const fs::path dir = root / "v1" / "sm_90a" / key.substr(0, 2) / key;
  CHECK(KernelCache(root).entry_dir(m) == dir);
  CHECK(slurp(dir / "kernel.cubin") == want.cubin);
  CHECK(slurp(dir / "kernel.cu") == m.source);
  auto j = plx::json::parse(slurp(dir / "manifest.json"));
  CHECK(j.at("key").as_string() == key);
  CHECK(j.at("variant_name").as_string() == m.variant_name);
  CHECK(j.at("arch").as_string() == "sm_90a");
  CHECK(j.at("nvrtc_version").as_string() == "12.8");
  CHECK(j.at("source").as_string() == m.source);
  CHECK(j.at("options").size() == 3);
  CHECK(j.at("headers").at("plx/decode.cuh").as_string() ==
        plx::sha256_hex(m.headers.at("plx/decode.cuh")));  // content replaced by its hash
  CHECK(j.at("cubin_sha256").as_string() == plx::sha256_hex(want.cubin));
  CHECK(j.at("cubin_size").as_int() == static_cast<std::int64_t>(want.cubin.size()));
  CHECK(j.at("lowered_name").as_string() == want.lowered_name);
  CHECK(j.at("registers").as_int() == 96);
  CHECK(j.at("created_unix").as_int() > 1'600'000'000);
  CHECK(count_subdirs(root / "tmp") == 0);  // staging dir renamed away
  // A fresh process-like object: disk hit, identical bytes, no build.
  KernelCache again(root);
  CHECK(again.load(m) == want);
  CHECK(again.get_or_build(m, fake_build(counter, m)) == want);
  CHECK(again.stats().disk_hits == 1);
  CHECK(again.stats().memory_hits == 1);
  CHECK(count_builds(counter) == 1);
  // A different manifest is a miss for load() and a build for get_or_build().
  Manifest other = other_manifest(1);
  CHECK_FALSE(again.load(other));
  CHECK(again.get_or_build(other, fake_build(counter, other)) == fake_kernel(other.key()));
  CHECK(count_builds(counter) == 2);
}

TEST_CASE("cache: a failing build reaches the caller and caches nothing", "[cache]") {
  TempDir t;
  KernelCache cache(t / "cache");
  const Manifest m = base_manifest();
  auto failing = []() -> CompiledKernel {
    throw plx::CompileError("nvrtc failed", "log", "opts", "excerpt");
  };
  CHECK_THROWS_AS(cache.get_or_build(m, failing), plx::CompileError);
  CHECK_FALSE(cache.load(m));
  CHECK(cache.get_or_build(m, fake_build(t / "builds", m)) == fake_kernel(m.key()));
  CompiledKernel empty;
  Manifest m2 = other_manifest(2);
  CHECK(cache.get_or_build(m2, [&] { return empty; }).cubin.empty());
  CHECK_FALSE(KernelCache(t / "cache").load(m2));  // an empty cubin is never published
}

TEST_CASE("cache: threads build a key once and different keys in parallel", "[cache][threads]") {
  TempDir t;
  KernelCache cache(t / "cache");
  const Manifest m = base_manifest();
  std::vector<std::thread> threads;
  std::vector<CompiledKernel> got(8);
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] { got[i] = cache.get_or_build(m, fake_build(t / "same", m, 100)); });
  for (auto& th : threads) th.join();
  CHECK(count_builds(t / "same") == 1);
  for (const auto& k : got) CHECK(k == fake_kernel(m.key()));

  // Two keys: each build waits until the other has started. If builds of different keys
  // were serialised, neither would ever see the other.
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  auto rendezvous = [&](const Manifest& mm) {
    return [&, key = mm.key()] {
      int me = ++inside;
      for (int i = 0; i < 500 && inside < 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (me == 1 && inside == 2) overlapped = true;  // the first saw the second start
      return fake_kernel(key);
    };
  };
  Manifest a = other_manifest(10), b = other_manifest(11);
  std::thread ta([&] { cache.get_or_build(a, rendezvous(a)); });
  std::thread tb([&] { cache.get_or_build(b, rendezvous(b)); });
  ta.join();
  tb.join();
  CHECK(overlapped);
}

TEST_CASE("cache: 8 processes racing for one key build it once", "[cache][processes]") {
  TempDir t;
  const Manifest m = base_manifest();
  const fs::path root = t / "cache", counter = t / "builds";
  int start[2];
  REQUIRE(::pipe(start) == 0);
  std::vector<pid_t> kids;
  for (int i = 0; i < 8; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(start[1]);
      char c;
      [[maybe_unused]] auto n = ::read(start[0], &c, 1);  // EOF when the parent says go
      int rc = 1;
      try {
        KernelCache cache(root);
        CompiledKernel k = cache.get_or_build(m, fake_build(counter, m, 200));
        plx::write_file_atomic(t / ("out-" + std::to_string(i)), k.cubin);
        rc = cache.memory_only() ? 2 : 0;
      } catch (...) {
        rc = 3;
      }
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  ::close(start[0]);
  ::close(start[1]);  // go
  for (pid_t pid : kids) CHECK(wait_child(pid) == 0);
  CHECK(count_builds(counter) == 1);
  const std::string want = fake_kernel(m.key()).cubin;
  for (int i = 0; i < 8; ++i) CHECK(slurp(t / ("out-" + std::to_string(i))) == want);
  for (const auto& c : KernelCache(root).verify()) CHECK(c.ok);
}

TEST_CASE("cache: a writer killed mid-publish leaves nothing that loads", "[cache][processes]") {
  // "building": killed inside build() while holding the lock; the others inside publish.
  const std::string stage =
      GENERATE(as<std::string>{}, "building", "staged", "written", "before_rename", "renamed");
  INFO("killed at " << stage);
  TempDir t;
  const Manifest m = base_manifest();
  const fs::path root = t / "cache", counter = t / "builds";
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto stop_here = [&] {
      [[maybe_unused]] auto n = ::write(fds[1], "x", 1);
      ::pause();  // until SIGKILL
    };
    KernelCache cache(root);
    cache.set_publish_hook_for_testing([&](std::string_view s) {
      if (s == stage) stop_here();
    });
    auto build = fake_build(counter, m);
    cache.get_or_build(m, [&] {
      CompiledKernel k = build();
      if (stage == "building") stop_here();
      return k;
    });
    ::_exit(0);
  }
  ::close(fds[1]);
  REQUIRE(read_byte_within(fds[0], 10000));
  ::close(fds[0]);
  ::kill(pid, SIGKILL);
  wait_child(pid);
  REQUIRE(count_builds(counter) == 1);

  const bool published = stage == "renamed";
  CHECK(fs::exists(KernelCache(root).entry_dir(m)) == published);
  Warnings w;
  KernelCache probe(root);
  probe.set_warning_sink(w.sink());
  CHECK(probe.load(m).has_value() == published);
  CHECK(w.lines.empty());  // a half-published entry is invisible, not corrupt
  // Age the dead writer's staging dir past the sweep's grace period.
  std::error_code ec;
  for (fs::directory_iterator it(root / "tmp", ec), end; !ec && it != end; it.increment(ec))
    fs::last_write_time(it->path(), fs::file_time_type::clock::now() - std::chrono::hours(1));
  // The next get_or_build must not wait forever on the dead writer's lock.
  const CompiledKernel want = fake_kernel(m.key());
  CHECK(run_in_child([&] {
          KernelCache next(root);
          return next.get_or_build(m, fake_build(counter, m)) == want ? 0 : 1;
        }, 20000) == 0);
  CHECK(count_builds(counter) == (published ? 1u : 2u));
  KernelCache after(root);
  CHECK(after.load(m) == want);
  for (const auto& c : after.verify()) CHECK(c.ok);
  CHECK(count_subdirs(root / "tmp") == 0);  // the dead writer's staging dir was swept
}

TEST_CASE("cache: losing the publish rename to another writer is fine", "[cache]") {
  // Another writer (one without our lock: NFS, a cleared lock file) publishes the same
  // key between our staging and our rename. Ours must be used from memory, silently.
  TempDir t;
  const Manifest m = base_manifest();
  const fs::path root = t / "cache";
  Warnings w;
  KernelCache cache(root);
  cache.set_warning_sink(w.sink());
  cache.set_publish_hook_for_testing([&](std::string_view stage) {
    if (stage != "before_rename") return;
    fs::path staged = fs::directory_iterator(root / "tmp")->path();
    fs::copy(staged, cache.entry_dir(m));  // the rival's identical entry appears
  });
  CHECK(cache.get_or_build(m, fake_build(t / "builds", m)) == fake_kernel(m.key()));
  CHECK(w.lines.empty());
  CHECK_FALSE(cache.memory_only());
  CHECK(count_subdirs(root / "tmp") == 0);  // our staging dir was removed
  CHECK(KernelCache(root).load(m) == fake_kernel(m.key()));
}

TEST_CASE("cache: corrupt entries are quarantined and rebuilt", "[cache][corrupt]") {
  using Corrupt = std::function<void(const fs::path& dir)>;
  struct Case {
    const char* name;
    Corrupt corrupt;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"cubin byte flipped",
       [](const fs::path& d) {
         std::string c = slurp(d / "kernel.cubin");
         c[c.size() / 2] ^= 0x5a;
         overwrite(d / "kernel.cubin", c);
       },
       "checksum mismatch"},
      {"cubin truncated to 0", [](const fs::path& d) { fs::resize_file(d / "kernel.cubin", 0); },
       "kernel.cubin is 0 bytes"},
      {"cubin truncated to half",
       [](const fs::path& d) { fs::resize_file(d / "kernel.cubin", 1500); },
       "kernel.cubin is 1500 bytes"},
      {"cubin missing", [](const fs::path& d) { fs::remove(d / "kernel.cubin"); },
       "kernel.cubin missing"},
      {"manifest garbled", [](const fs::path& d) { overwrite(d / "manifest.json", "{ garbage"); },
       "manifest.json unparsable"},
      {"manifest truncated",
       [](const fs::path& d) {
         fs::resize_file(d / "manifest.json", fs::file_size(d / "manifest.json") / 2);
       },
       "manifest.json unparsable"},
      {"manifest empty", [](const fs::path& d) { fs::resize_file(d / "manifest.json", 0); },
       "manifest.json unparsable"},
      {"manifest missing", [](const fs::path& d) { fs::remove(d / "manifest.json"); },
       "manifest.json missing"},
      {"manifest field mismatch",
       [](const fs::path& d) {
         auto j = plx::json::parse(slurp(d / "manifest.json"));
         j.set("nvrtc_version", "11.0");
         overwrite(d / "manifest.json", j.dump(2));
       },
       "fields differ"},
      {"manifest field mistyped",
       [](const fs::path& d) {
         auto j = plx::json::parse(slurp(d / "manifest.json"));
         j.set("registers", "many");
         overwrite(d / "manifest.json", j.dump(2));
       },
       "manifest.json malformed"},
      {"manifest checksum edited",
       [](const fs::path& d) {
         auto j = plx::json::parse(slurp(d / "manifest.json"));
         j.set("cubin_sha256", plx::sha256_hex("other"));
         overwrite(d / "manifest.json", j.dump(2));
       },
       "checksum mismatch"},
      {"entry replaced by a file",
       [](const fs::path& d) {
         fs::remove_all(d);
         plx::write_file_durable(d, "not a dir");
       },
       "not a directory"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    TempDir t;
    const Manifest m = base_manifest();
    const fs::path root = t / "cache", counter = t / "builds";
    const CompiledKernel want = fake_kernel(m.key());
    KernelCache(root).get_or_build(m, fake_build(counter, m));
    const fs::path dir = KernelCache(root).entry_dir(m);
    c.corrupt(dir);

    Warnings w;
    KernelCache cache(root);
    cache.set_warning_sink(w.sink());
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == want);  // never a throw
    CHECK(count_builds(counter) == 2);
    REQUIRE(w.lines.size() == 1);
    CHECK(w.lines[0].rfind("plx: warning: cache entry " + m.key(), 0) == 0);
    CHECK(w.any_contains("quarantined: "));
    CHECK(w.any_contains(c.reason));
    CHECK(cache.stats().quarantines == 1);
    CHECK(count_subdirs(root / "quarantine") == 1);
    const fs::path q = fs::directory_iterator(root / "quarantine")->path();
    CHECK(q.filename().string().rfind(m.key() + "-", 0) == 0);
    CHECK(slurp(q / "reason.txt").find(c.reason) != std::string::npos);
    // republished and good again
    CHECK(KernelCache(root).load(m) == want);
    for (const auto& check : KernelCache(root).verify()) CHECK(check.ok);

    // load() (no build) quarantines too and reports a miss.
    c.corrupt(dir);
    Warnings w2;
    KernelCache loader(root);
    loader.set_warning_sink(w2.sink());
    CHECK_FALSE(loader.load(m));
    CHECK(w2.lines.size() == 1);
    CHECK(count_subdirs(root / "quarantine") == 2);
    CHECK_FALSE(fs::exists(dir));
  }
}

TEST_CASE("cache: quarantine() from the runtime forces a rebuild", "[cache][corrupt]") {
  TempDir t;
  const Manifest m = base_manifest();
  const fs::path counter = t / "builds";
  Warnings w;
  KernelCache cache(t / "cache");
  cache.set_warning_sink(w.sink());
  cache.get_or_build(m, fake_build(counter, m));
  cache.quarantine(m.key(), "cuLibraryLoadData: CUDA_ERROR_INVALID_IMAGE");
  REQUIRE(w.lines.size() == 1);
  CHECK(w.any_contains("quarantined: cuLibraryLoadData: CUDA_ERROR_INVALID_IMAGE"));
  CHECK_FALSE(fs::exists(cache.entry_dir(m)));
  CHECK_FALSE(cache.load(m));  // the in-memory copy is gone too
  cache.get_or_build(m, fake_build(counter, m));
  CHECK(count_builds(counter) == 2);
  cache.quarantine("../../etc", "hostile key");  // ignored: not a key
  cache.quarantine(std::string(64, 'a'), "unknown key");
  CHECK(w.lines.size() == 1);
}

// =======================================================================================
// Unusable directories

TEST_CASE("cache: an unwritable directory degrades to memory caching", "[cache][degrade]") {
  TempDir t;
  std::vector<fs::path> roots;
  // Root ignores permission bits, so a path under a regular file (mkdir: ENOTDIR) is the
  // unwritable directory that works for everyone; chmod 0555 only when not root.
  plx::write_file_durable(t / "a-file", "x");
  roots.push_back(t / "a-file" / "cache");
  if (::geteuid() != 0) {
    fs::create_directories(t / "ro");
    fs::permissions(t / "ro", fs::perms(0555));
    roots.push_back(t / "ro" / "cache");
  }
  for (const fs::path& root : roots) {
    INFO(root);
    const fs::path counter = t / ("builds-" + std::to_string(roots.size()));
    fs::remove(counter);
    Warnings w;
    KernelCache cache(root);
    cache.set_warning_sink(w.sink());
    const Manifest m = base_manifest(), m2 = other_manifest(1);
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == fake_kernel(m.key()));
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == fake_kernel(m.key()));
    CHECK(cache.get_or_build(m2, fake_build(counter, m2)) == fake_kernel(m2.key()));
    CHECK(count_builds(counter) == 2);
    CHECK(cache.memory_only());
    REQUIRE(w.lines.size() == 1);  // one line per cache object, not per key
    CHECK(w.lines[0].find("caching in memory only") != std::string::npos);
    CHECK(cache.list().empty());
    CHECK(cache.verify().empty());
  }
}

TEST_CASE("cache: a full disk degrades to memory caching", "[cache][degrade]") {
  TempDir t;
  const fs::path root = t / "cache", counter = t / "builds";
  const Manifest m = base_manifest();
  Warnings w;
  KernelCache cache(root);
  cache.set_warning_sink(w.sink());
  {
    FaultHookGuard full([](const fs::path& p) {
      return p.filename() == "manifest.json" ? ENOSPC : 0;  // fail half-way through staging
    });
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == fake_kernel(m.key()));
    CHECK(cache.get_or_build(m, fake_build(counter, m)) == fake_kernel(m.key()));
  }
  CHECK(count_builds(counter) == 1);
  REQUIRE(w.lines.size() == 1);
  CHECK(w.any_contains("No space left on device"));
  CHECK(cache.memory_only());
  CHECK_FALSE(fs::exists(cache.entry_dir(m)));
  CHECK(count_subdirs(root / "tmp") == 0);  // the partial staging dir was removed
  // The disk is fine again: a new cache object uses it.
  KernelCache later(root);
  later.get_or_build(m, fake_build(counter, m));
  CHECK(KernelCache(root).load(m) == fake_kernel(m.key()));
}

TEST_CASE("cache: the default warning is one line on stderr", "[cache][degrade]") {
  TempDir t;
  plx::write_file_durable(t / "a-file", "x");
  fflush(stderr);
  int saved = ::dup(STDERR_FILENO);
  int capture = ::open((t / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(capture, STDERR_FILENO);
  {
    KernelCache cache(t / "a-file" / "cache");
    for (int i = 0; i < 3; ++i) {
      Manifest m = other_manifest(i);
      cache.get_or_build(m, fake_build(t / "builds", m));
    }
  }
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(capture);
  std::string text = slurp(t / "stderr");
  CHECK(text.rfind("plx: warning: kernel cache ", 0) == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

// =======================================================================================
// Care commands

TEST_CASE("cache: list, verify and clear", "[cache][care]") {
  TempDir t;
  const fs::path root = t / "cache", counter = t / "builds";
  KernelCache cache(root);
  CHECK(cache.list().empty());
  Manifest a = other_manifest(1), b = other_manifest(2), c = other_manifest(3);
  c.arch = "sm_80";
  for (const Manifest* m : {&c, &a, &b}) cache.get_or_build(*m, fake_build(counter, *m));

  auto entries = cache.list();
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].variant_name == a.variant_name);  // sorted by variant name
  CHECK(entries[1].variant_name == b.variant_name);
  CHECK(entries[2].arch == "sm_80");
  CHECK(entries[2].key == c.key());
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (const auto& e : entries) {
    CHECK(e.size_bytes > 3000);
    CHECK(std::abs(e.created_unix - now) < 120);
    CHECK(fs::is_directory(e.dir));
  }

  auto checks = cache.verify();
  REQUIRE(checks.size() == 3);
  for (const auto& ch : checks) CHECK(ch.ok);

  // Break two entries in ways only a full check sees or that need the key recomputed.
  overwrite(cache.entry_dir(a) / "kernel.cu", "edited by hand");
  auto j = plx::json::parse(slurp(cache.entry_dir(b) / "manifest.json"));
  j.set("generator_version", "9.9.9");  // still valid JSON, no longer hashes to the key
  overwrite(cache.entry_dir(b) / "manifest.json", j.dump(2));
  checks = cache.verify();
  int bad = 0;
  for (const auto& ch : checks) {
    if (ch.ok) continue;
    ++bad;
    if (ch.key == a.key()) CHECK(ch.reason.find("kernel.cu") != std::string::npos);
    if (ch.key == b.key()) CHECK(ch.reason.find("do not hash to the key") != std::string::npos);
  }
  CHECK(bad == 2);
  CHECK(cache.list().size() == 3);  // verify() alone moves nothing

  Warnings w;
  cache.set_warning_sink(w.sink());
  cache.verify(true);
  CHECK(w.lines.size() == 2);
  CHECK(cache.list().size() == 1);
  CHECK(count_subdirs(root / "quarantine") == 2);
  for (const auto& ch : cache.verify()) CHECK(ch.ok);

  auto cleared = cache.clear();
  CHECK(cleared.entries == 1);
  CHECK(cleared.bytes > 3000);
  CHECK(cache.list().empty());
  CHECK_FALSE(fs::exists(root / "v1"));
  CHECK_FALSE(fs::exists(root / "quarantine"));
  CHECK(count_subdirs(root / "tmp") == 0);  // nothing half-deleted left behind
  const auto before = count_builds(counter);
  cache.get_or_build(c, fake_build(counter, c));  // memory was cleared too
  CHECK(count_builds(counter) == before + 1);
}

TEST_CASE("cache: explain says why a manifest missed", "[cache][care]") {
  TempDir t;
  const fs::path root = t / "cache", counter = t / "builds";
  Manifest cached = base_manifest();
  {
    KernelCache empty(root);
    auto e = empty.explain(cached);
    CHECK(e.status == plx::CacheExplanation::Status::miss);
    CHECK_FALSE(e.nearest);
    CHECK(e.differences.empty());
  }
  KernelCache(root).get_or_build(cached, fake_build(counter, cached));
  KernelCache cache(root);
  CHECK(cache.explain(cached).status == plx::CacheExplanation::Status::disk_hit);
  cache.load(cached);
  CHECK(cache.explain(cached).status == plx::CacheExplanation::Status::memory_hit);

  auto explain = [&](const std::function<void(Manifest&)>& edit) {
    Manifest wanted = cached;
    edit(wanted);
    auto e = KernelCache(root).explain(wanted);
    CHECK(e.status == plx::CacheExplanation::Status::miss);
    CHECK(e.key == wanted.key());
    REQUIRE(e.nearest);
    CHECK(e.nearest->key == cached.key());
    return e.differences;
  };
  using V = std::vector<std::string>;
  CHECK(explain([](Manifest& m) { m.nvrtc_version = "13.0"; }) == V{"nvrtc_version: 13.0 vs 12.8"});
  CHECK(explain([](Manifest& m) { m.headers["plx/decode.cuh"] += "//"; }) ==
        V{"header plx/decode.cuh changed"});
  CHECK(explain([](Manifest& m) { m.headers["plx/new.cuh"] = ""; }) ==
        V{"header plx/new.cuh added"});
  CHECK(explain([](Manifest& m) { m.headers.erase("plx/softmax.cuh"); }) ==
        V{"header plx/softmax.cuh removed"});
  CHECK(explain([](Manifest& m) { m.source += "\n"; }) == V{"source differs"});
  CHECK(explain([](Manifest& m) { m.options.push_back("-lineinfo"); }) ==
        V{"options differ: +-lineinfo"});
  CHECK(explain([](Manifest& m) { m.options[1] = "-std=c++17"; }) ==
        V{"options differ: +-std=c++17 --std=c++20"});
  CHECK(explain([](Manifest& m) { std::reverse(m.options.begin(), m.options.end()); }) ==
        V{"options order differs"});
  CHECK(explain([](Manifest& m) { m.arch = "sm_80"; }) == V{"arch: sm_80 vs sm_90a"});
  CHECK(explain([](Manifest& m) {
          m.generator_version = "0.2.0";
          m.nvrtc_version = "13.0";
        }) == V{"nvrtc_version: 13.0 vs 12.8", "generator_version: 0.2.0 vs 0.1.0"});

  // Same variant name wins over more equal fields.
  Manifest renamed = cached;
  renamed.variant_name = "plx_decode_something_else";
  renamed.generator_version = "0.1.1";
  KernelCache(root).get_or_build(renamed, fake_build(counter, renamed));
  Manifest wanted = cached;
  wanted.generator_version = "0.1.1";
  wanted.source += "//";
  wanted.nvrtc_version = "13.0";
  auto e = KernelCache(root).explain(wanted);
  REQUIRE(e.nearest);
  CHECK(e.nearest->key == cached.key());
  CHECK(e.differences.size() == 3);
  // Without a same-name entry, the one with most equal fields.
  wanted.variant_name = "plx_decode_unrelated";
  e = KernelCache(root).explain(wanted);
  REQUIRE(e.nearest);
  CHECK(e.nearest->key == renamed.key());
  CHECK(e.differences == V{"variant_name: plx_decode_unrelated vs plx_decode_something_else",
                           "source differs", "nvrtc_version: 13.0 vs 12.8"});

  // An entry under the key that would be quarantined.
  fs::resize_file(cache.entry_dir(cached) / "kernel.cubin", 10);
  e = KernelCache(root).explain(cached);
  CHECK(e.status == plx::CacheExplanation::Status::corrupt);
  CHECK(e.reason.find("kernel.cubin is 10 bytes") != std::string::npos);
  CHECK(fs::exists(cache.entry_dir(cached)));  // explain() only looks
}

TEST_CASE("cache: default_root follows PLX_CACHE_DIR, XDG_CACHE_HOME, HOME", "[cache]") {
  struct Env {
    std::string name;
    std::optional<std::string> old;
    explicit Env(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) old = v;
    }
    ~Env() {
      if (old) ::setenv(name.c_str(), old->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  } plx_dir("PLX_CACHE_DIR"), xdg("XDG_CACHE_HOME"), home("HOME");
  ::setenv("PLX_CACHE_DIR", "/srv/plx", 1);
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  ::setenv("HOME", "/home/u", 1);
  CHECK(KernelCache::default_root() == fs::path("/srv/plx"));
  ::setenv("PLX_CACHE_DIR", "", 1);  // empty means unset
  CHECK(KernelCache::default_root() == fs::path("/xdg/parallax-jit"));
  ::unsetenv("PLX_CACHE_DIR");
  ::setenv("XDG_CACHE_HOME", "relative/dir", 1);  // XDG: relative values are ignored
  CHECK(KernelCache::default_root() == fs::path("/home/u/.cache/parallax-jit"));
  ::unsetenv("XDG_CACHE_HOME");
  CHECK(KernelCache::default_root() == fs::path("/home/u/.cache/parallax-jit"));
}

TEST_CASE("cache: a hostile arch string stays inside the cache", "[cache]") {
  TempDir t;
  Manifest m = base_manifest();
  m.arch = "../../escape";
  KernelCache cache(t / "cache");
  cache.get_or_build(m, fake_build(t / "builds", m));
  fs::path dir = cache.entry_dir(m);
  CHECK(dir.string().find("..") == std::string::npos);
  CHECK(fs::exists(dir / "kernel.cubin"));
  CHECK(KernelCache(t / "cache").load(m) == fake_kernel(m.key()));
}
