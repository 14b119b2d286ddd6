#include "runtime/kernel_cache.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>
#include <tuple>

#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/json.hpp"
#include "common/sha256.hpp"
#include "parallax/errors.hpp"

namespace plx {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCubinFile = "kernel.cubin";
constexpr const char* kSourceFile = "kernel.cu";
constexpr const char* kManifestFile = "manifest.json";

// ---------------------------------------------------------------------------------------
// Small helpers

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::string one_line(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return s;
}

bool is_key(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The arch becomes a path component: anything that could climb out of the cache or
// confuse the layout is replaced by a hash (the key still holds the real arch).
std::string arch_dir(const std::string& arch) {
  bool safe = !arch.empty() && arch != "." && arch != ".." && arch.size() <= 64 &&
              std::all_of(arch.begin(), arch.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
                       c == '.';
              });
  return safe ? arch : "arch-" + sha256_hex(arch).substr(0, 16);
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

timespec now_realtime() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

std::string utc_text(std::time_t t, const char* format) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

[[noreturn]] void throw_ec(std::string_view what, const fs::path& p, const std::error_code& ec) {
  throw IoError(fmt::format("{} {}: {}", what, p.string(), ec.message()), ec.value());
}

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_ec("cannot create directory", dir, ec);
}

std::uint64_t tree_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (it->is_regular_file(ec2)) total += it->file_size(ec2);
  }
  return total;
}

// Subdirectories of `dir`, sorted by name (missing or unreadable dir: none).
std::vector<fs::path> subdirs(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (it->is_directory(ec2)) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Staging and clearing happen in <root>/tmp/<purpose>.<pid>.<counter>.<host>: the pid
// and host let a later process tell a dead writer's leftovers from a live writer's.
std::string tmp_name(std::string_view purpose) {
  static std::atomic<unsigned> counter{0};
  timespec ts = now_realtime();
  return fmt::format("{}.{}.{}-{}.{}", purpose, ::getpid(), counter.fetch_add(1),
                     ts.tv_nsec, hostname());
}

// ---------------------------------------------------------------------------------------
// The manifest as stored: headers by SHA-256, so a manifest.json is enough to recompute
// the key (verify) and to explain a miss, without the header texts.

struct Fields {
  std::string variant_name, source;
  std::map<std::string, std::string> header_sha256;
  std::string nvrtc_version;
  std::vector<std::string> options;
  std::string arch, generator_version;
  bool operator==(const Fields&) const = default;
};

Fields fields_of(const Manifest& m) {
  Fields f{m.variant_name, m.source, {}, m.nvrtc_version, m.options, m.arch,
           m.generator_version};
  for (const auto& [name, content] : m.headers) f.header_sha256[name] = sha256_hex(content);
  return f;
}

// Throws json::TypeError on a missing or mistyped field.
Fields fields_of(const json::Value& j) {
  Fields f;
  f.variant_name = j.at("variant_name").as_string();
  f.source = j.at("source").as_string();
  for (const auto& [name, sha] : j.at("headers").as_object())
    f.header_sha256[name] = sha.as_string();
  f.nvrtc_version = j.at("nvrtc_version").as_string();
  for (const auto& o : j.at("options").as_array()) f.options.push_back(o.as_string());
  f.arch = j.at("arch").as_string();
  f.generator_version = j.at("generator_version").as_string();
  return f;
}

// "name <length>:<bytes>\n": the length prefix makes the text unambiguous whatever the
// fields contain (no separator can be forged by a field's content).
void add_field(std::string& out, std::string_view name, std::string_view value) {
  out += fmt::format("{} {}:", name, value.size());
  out += value;
  out += '\n';
}

std::string canonical_text(const Fields& f) {
  std::string out = fmt::format("parallax-jit kernel manifest v{}\n", kCacheSchemaVersion);
  add_field(out, "variant_name", f.variant_name);
  add_field(out, "source", f.source);
  for (const auto& [name, sha] : f.header_sha256)  // std::map: sorted by name
    add_field(out, "header", fmt::format("{}:{} sha256:{}", name.size(), name, sha));
  add_field(out, "nvrtc_version", f.nvrtc_version);
  for (const auto& o : f.options) add_field(out, "option", o);
  add_field(out, "arch", f.arch);
  add_field(out, "generator_version", f.generator_version);
  return out;
}

bool fields_are_utf8(const Fields& f) {
  auto ok = [](const std::string& s) { return json::is_valid_utf8(s); };
  return ok(f.variant_name) && ok(f.source) && ok(f.nvrtc_version) && ok(f.arch) &&
         ok(f.generator_version) && std::all_of(f.options.begin(), f.options.end(), ok) &&
         std::all_of(f.header_sha256.begin(), f.header_sha256.end(),
                     [&](const auto& h) { return ok(h.first); });
}

json::Value manifest_json(const Fields& f, const std::string& key, const CompiledKernel& k) {
  json::Value j = json::Value::object();
  j.set("schema", kCacheSchemaVersion);
  j.set("key", key);
  j.set("variant_name", f.variant_name);
  j.set("arch", f.arch);
  j.set("nvrtc_version", f.nvrtc_version);
  j.set("generator_version", f.generator_version);
  json::Value opts = json::Value::array();
  for (const auto& o : f.options) opts.push_back(o);
  j.set("options", std::move(opts));
  json::Value headers = json::Value::object();
  for (const auto& [name, sha] : f.header_sha256) headers.set(name, sha);
  j.set("headers", std::move(headers));
  j.set("source_sha256", sha256_hex(f.source));
  j.set("source", f.source);
  j.set("cubin_sha256", sha256_hex(k.cubin));
  j.set("cubin_size", static_cast<std::int64_t>(k.cubin.size()));
  j.set("lowered_name", k.lowered_name);
  j.set("log", k.log);
  j.set("registers", k.registers);
  j.set("spill_bytes", k.spill_bytes);
  j.set("stack_bytes", k.stack_bytes);
  j.set("static_smem", k.static_smem);
  std::time_t now = now_realtime().tv_sec;
  j.set("created_unix", static_cast<std::int64_t>(now));
  j.set("created", utc_text(now, "%Y-%m-%dT%H:%M:%SZ"));
  return j;
}

int int_field(const json::Value& j, std::string_view name) {
  std::int64_t v = j.at(name).as_int();
  if (v < INT_MIN || v > INT_MAX) throw json::TypeError(fmt::format("{} out of range", name));
  return static_cast<int>(v);
}

// ---------------------------------------------------------------------------------------
// Reading one entry. Every way the files can be wrong ends in `bad` with a reason.

struct EntryRead {
  enum class State { missing, good, bad } state = State::missing;
  std::string reason;
  CompiledKernel kernel;
  json::Value manifest;
};

EntryRead bad(std::string reason) {
  EntryRead r;
  r.state = EntryRead::State::bad;
  r.reason = std::move(reason);
  return r;
}

// The manifest's own fields: right schema, right key, and the fields that made the key.
// `wanted`: the caller's fields must match. Without it (verify), the stored fields must
// hash to the key. Returns the problem, empty when fine. Throws json::TypeError.
std::string check_manifest(const json::Value& j, const std::string& key, const Fields* wanted) {
  if (j.at("schema").as_int() != kCacheSchemaVersion) return "manifest.json schema differs";
  if (j.at("key").as_string() != key) return "manifest.json names another key";
  Fields stored = fields_of(j);
  if (wanted != nullptr && stored != *wanted) return "manifest.json fields differ from the key's";
  if (wanted == nullptr && sha256_hex(canonical_text(stored)) != key)
    return "manifest.json fields do not hash to the key";
  if (j.at("source_sha256").as_string() != sha256_hex(stored.source))
    return "manifest.json source checksum mismatch";
  return {};
}

// The cubin against the size and SHA-256 recorded at publish time: catches truncation,
// bit rot and hand edits before the driver ever sees the bytes.
std::string check_cubin(const std::optional<std::string>& cubin, const json::Value& j) {
  if (!cubin) return "kernel.cubin missing or unreadable";
  std::int64_t size = j.at("cubin_size").as_int();
  if (size <= 0 || static_cast<std::uint64_t>(size) != cubin->size())
    return fmt::format("kernel.cubin is {} bytes, manifest.json says {}", cubin->size(), size);
  if (sha256_hex(*cubin) != j.at("cubin_sha256").as_string())
    return "kernel.cubin checksum mismatch";
  return {};
}

CompiledKernel kernel_of(std::string cubin, const json::Value& j) {
  CompiledKernel k;
  k.cubin = std::move(cubin);
  k.lowered_name = j.at("lowered_name").as_string();
  k.log = j.at("log").as_string();
  k.registers = int_field(j, "registers");
  k.spill_bytes = int_field(j, "spill_bytes");
  k.stack_bytes = int_field(j, "stack_bytes");
  k.static_smem = int_field(j, "static_smem");
  return k;
}

// Reads and checks one entry; see check_manifest for `wanted`. `full` also checks
// kernel.cu (verify only: loading does not need it).
EntryRead read_entry(const fs::path& dir, const std::string& key, const Fields* wanted,
                     bool full) {
  std::error_code ec;
  auto st = fs::symlink_status(dir, ec);
  if (ec || !fs::exists(st)) return {};
  if (!fs::is_directory(st)) return bad("entry is not a directory");
  EntryRead r;
  auto text = read_file(dir / kManifestFile);
  if (!text) return bad("manifest.json missing or unreadable");
  try {
    r.manifest = json::parse(*text);
  } catch (const json::ParseError& e) {
    return bad(fmt::format("manifest.json unparsable: {}", e.what()));
  }
  try {
    if (std::string why = check_manifest(r.manifest, key, wanted); !why.empty()) return bad(why);
    auto cubin = read_file(dir / kCubinFile);
    if (std::string why = check_cubin(cubin, r.manifest); !why.empty()) return bad(why);
    if (full && read_file(dir / kSourceFile) != r.manifest.at("source").as_string())
      return bad("kernel.cu missing or differs from the manifest's source");
    r.kernel = kernel_of(std::move(*cubin), r.manifest);
  } catch (const json::TypeError& e) {
    return bad(fmt::format("manifest.json malformed: {}", e.what()));
  }
  r.state = EntryRead::State::good;
  return r;
}

// ---------------------------------------------------------------------------------------
// explain(): what differs between the wanted manifest and a cached one.

std::vector<std::string> option_diff(const std::vector<std::string>& wanted,
                                     const std::vector<std::string>& cached) {
  std::set<std::string> w(wanted.begin(), wanted.end()), c(cached.begin(), cached.end());
  std::string text;
  for (const auto& o : wanted)
    if (!c.count(o)) text += " +" + o;
  for (const auto& o : cached)
    if (!w.count(o)) text += " -" + o;
  if (!text.empty()) return {"options differ:" + text};
  return {"options order differs"};
}

std::vector<std::string> header_diff(const Fields& w, const Fields& c) {
  std::vector<std::string> out;
  for (const auto& [name, sha] : w.header_sha256) {
    auto it = c.header_sha256.find(name);
    if (it == c.header_sha256.end()) out.push_back("header " + name + " added");
    else if (it->second != sha) out.push_back("header " + name + " changed");
  }
  for (const auto& [name, sha] : c.header_sha256)
    if (!w.header_sha256.count(name)) out.push_back("header " + name + " removed");
  return out;
}

std::vector<std::string> differences(const Fields& w, const Fields& c) {
  std::vector<std::string> out;
  auto scalar = [&](const char* name, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(fmt::format("{}: {} vs {}", name, a, b));
  };
  scalar("variant_name", w.variant_name, c.variant_name);
  if (w.source != c.source) out.push_back("source differs");
  for (auto& line : header_diff(w, c)) out.push_back(std::move(line));
  scalar("nvrtc_version", w.nvrtc_version, c.nvrtc_version);
  if (w.options != c.options)
    for (auto& line : option_diff(w.options, c.options)) out.push_back(std::move(line));
  scalar("arch", w.arch, c.arch);
  scalar("generator_version", w.generator_version, c.generator_version);
  return out;
}

int equal_fields(const Fields& w, const Fields& c) {
  return (w.variant_name == c.variant_name) + (w.source == c.source) +
         (w.header_sha256 == c.header_sha256) + (w.nvrtc_version == c.nvrtc_version) +
         (w.options == c.options) + (w.arch == c.arch) +
         (w.generator_version == c.generator_version);
}

}  // namespace

// =======================================================================================
// Manifest

std::string Manifest::canonical() const { return canonical_text(fields_of(*this)); }

std::string Manifest::key() const { return sha256_hex(canonical()); }

std::vector<std::string> Manifest::canonical_options(std::vector<std::string> options) {
  std::sort(options.begin(), options.end());
  options.erase(std::unique(options.begin(), options.end()), options.end());
  return options;
}

// =======================================================================================
// KernelCache: construction, memory, warnings

KernelCache::KernelCache(fs::path root) : root_(std::move(root)) {}

fs::path KernelCache::default_root() {
  if (std::string dir = env("PLX_CACHE_DIR"); !dir.empty()) return dir;
  // XDG says relative values are invalid and must be ignored.
  if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty() && xdg[0] == '/')
    return fs::path(xdg) / "parallax-jit";
  std::string home = env("HOME");
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr)
      home = pw->pw_dir;
  }
  if (home.empty()) return fs::temp_directory_path() / fmt::format("parallax-jit-{}", ::getuid());
  return fs::path(home) / ".cache" / "parallax-jit";
}

fs::path KernelCache::entry_dir(const Manifest& m) const {
  std::string key = m.key();
  return root_ / fmt::format("v{}", kCacheSchemaVersion) / arch_dir(m.arch) / key.substr(0, 2) /
         key;
}

void KernelCache::set_warning_sink(std::function<void(const std::string&)> sink) {
  std::lock_guard lock(mu_);
  sink_ = std::move(sink);
}

void KernelCache::set_publish_hook_for_testing(std::function<void(std::string_view)> hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

void KernelCache::warn(const std::string& line) const {
  std::function<void(const std::string&)> sink;
  {
    std::lock_guard lock(mu_);
    sink = sink_;
  }
  if (sink) return sink(line);
  // One write() per line, so lines of concurrent processes do not interleave.
  std::string text = line + "\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, text.data(), text.size());
}

void KernelCache::hook(std::string_view stage) const {
  std::function<void(std::string_view)> h;
  {
    std::lock_guard lock(mu_);
    h = hook_;
  }
  if (h) h(stage);
}

void KernelCache::degrade(const std::string& what) {
  if (!memory_only_.exchange(true))
    warn(fmt::format("plx: warning: kernel cache {} is not usable ({}); caching in memory only",
                     root_.string(), one_line(what)));
}

CacheStats KernelCache::stats() const {
  return {counters_.memory_hits.load(), counters_.disk_hits.load(), counters_.builds.load(),
          counters_.quarantines.load()};
}

std::optional<CompiledKernel> KernelCache::memory_hit(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = memory_.find(key);
  if (it == memory_.end()) return std::nullopt;
  ++counters_.memory_hits;
  return it->second;
}

void KernelCache::memory_put(const std::string& key, const CompiledKernel& k) {
  std::lock_guard lock(mu_);
  memory_[key] = k;
}

// One mutex per key: builds of different keys run in parallel, the same key waits.
std::shared_ptr<std::mutex> KernelCache::key_mutex(const std::string& key) {
  std::lock_guard lock(mu_);
  auto& m = key_mutexes_[key];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

// =======================================================================================
// get_or_build / load

std::optional<CompiledKernel> KernelCache::load_disk(const Manifest& m, const std::string& key,
                                                     bool may_quarantine, bool* was_bad) {
  Fields wanted = fields_of(m);
  fs::path dir = entry_dir(m);
  EntryRead r = read_entry(dir, key, &wanted, false);
  if (r.state == EntryRead::State::good) {
    ++counters_.disk_hits;
    memory_put(key, r.kernel);
    return std::move(r.kernel);
  }
  if (r.state == EntryRead::State::bad) {
    if (was_bad != nullptr) *was_bad = true;
    if (may_quarantine) quarantine_dir(dir, key, m.variant_name + ": " + r.reason);
  }
  return std::nullopt;
}

// The cross-process lock for a key; nullopt once the cache is memory-only.
std::optional<FileLock> KernelCache::lock_key(const std::string& key) {
  if (memory_only_) return std::nullopt;
  try {
    make_dirs(root_ / "locks");
    return FileLock(root_ / "locks" / (key + ".lock"));
  } catch (const std::exception& e) {
    degrade(e.what());
    return std::nullopt;
  }
}

CompiledKernel KernelCache::get_or_build(const Manifest& m,
                                         const std::function<CompiledKernel()>& build) {
  const std::string key = m.key();
  if (auto k = memory_hit(key)) return std::move(*k);
  auto km = key_mutex(key);
  std::lock_guard key_guard(*km);
  if (auto k = memory_hit(key)) return std::move(*k);  // another thread built it meanwhile
  // Readers take no lock: publishing is one atomic rename, so an entry is whole or absent.
  if (auto k = load_disk(m, key, false)) return std::move(*k);
  std::optional<FileLock> lock = lock_key(key);
  // Re-check under the lock: another process may have published while we waited. A bad
  // entry is quarantined only now, so we never move away a fresh one being republished.
  if (auto k = load_disk(m, key, true)) return std::move(*k);
  CompiledKernel built = build();
  ++counters_.builds;
  if (built.cubin.empty()) return built;  // nothing that could be a kernel is cached
  if (lock) publish(m, key, built);
  memory_put(key, built);
  return built;
}

std::optional<CompiledKernel> KernelCache::load(const Manifest& m) {
  const std::string key = m.key();
  if (auto k = memory_hit(key)) return k;
  auto km = key_mutex(key);
  std::lock_guard key_guard(*km);
  bool was_bad = false;
  if (auto k = load_disk(m, key, false, &was_bad)) return k;
  if (!was_bad) return std::nullopt;
  std::optional<FileLock> lock = lock_key(key);  // quarantine under the lock, as above
  return load_disk(m, key, true);
}

// =======================================================================================
// Publishing

// Writes the three files into the private staging dir and makes them durable. Order does
// not matter: nobody can see the directory until it is renamed into place.
void KernelCache::stage(const fs::path& tmp, const Manifest& m, const std::string& key,
                        const CompiledKernel& k) {
  write_file_durable(tmp / kCubinFile, k.cubin);
  write_file_durable(tmp / kSourceFile, m.source);
  write_file_durable(tmp / kManifestFile, manifest_json(fields_of(m), key, k).dump(2) + "\n");
  // The directory's own entries must be on disk before the rename makes it visible,
  // or a crash could publish a directory whose files are missing.
  fsync_dir(tmp);
  hook("written");
}

void KernelCache::publish(const Manifest& m, const std::string& key, const CompiledKernel& k) {
  // The manifest must read back byte-exact; a field that JSON cannot carry stays in memory.
  if (!fields_are_utf8(fields_of(m))) return;
  std::call_once(swept_tmp_, [&] { sweep_stale_tmp(); });
  fs::path tmp = root_ / "tmp" / tmp_name("stage");
  try {
    make_dirs(tmp);
    hook("staged");
    stage(tmp, m, key, k);
    fs::path final_dir = entry_dir(m);
    make_dirs(final_dir.parent_path());
    hook("before_rename");
    // The publish itself: a directory rename is atomic, so readers see no entry or a
    // complete one. It fails (EEXIST/ENOTEMPTY) when the target exists: another
    // publisher won (only possible without our lock, e.g. a writer that degraded, or a
    // cleared lock file). Theirs holds the same bytes; ours stays in memory.
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
      int err = errno;
      if (err != EEXIST && err != ENOTEMPTY)
        throw IoError(fmt::format("cannot rename {}: {}", final_dir.string(), std::strerror(err)),
                      err);
    } else {
      hook("renamed");
      fsync_dir(final_dir.parent_path());  // make the new name itself survive a crash
    }
  } catch (const std::exception& e) {
    degrade(e.what());
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);  // only left when the rename did not happen
}

// Staging dirs of writers that died (SIGKILL, power loss) would pile up in tmp/. Remove
// those of a dead process on this host once they are 10 minutes old (staging takes
// milliseconds; the grace covers a live writer in another pid namespace with the same
// host name), and any older than a day (other hosts, where pids mean nothing).
void KernelCache::sweep_stale_tmp() {
  const std::string host = hostname();
  const auto now = fs::file_time_type::clock::now();
  for (const fs::path& dir : subdirs(root_ / "tmp")) {
    std::error_code ec;
    auto age = now - fs::last_write_time(dir, ec);
    if (ec || age < std::chrono::minutes(10)) continue;
    std::string name = dir.filename().string();  // <purpose>.<pid>.<n>.<host>
    std::size_t a = name.find('.'), b = name.find('.', a + 1), c = name.find('.', b + 1);
    bool dead = false;
    if (c != std::string::npos && name.substr(c + 1) == host) {
      long pid = std::strtol(name.substr(a + 1, b - a - 1).c_str(), nullptr, 10);
      dead = pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 &&
             errno == ESRCH;
    }
    if (dead || age > std::chrono::hours(24)) fs::remove_all(dir, ec);
  }
}

// =======================================================================================
// Quarantine

namespace {

// Moves `entry` to a fresh <qroot>/<key>-<UTC time>[-n]/ (an entry that is not a
// directory goes inside it as "entry"). Returns the errno of the move, 0 on success.
int move_to_quarantine(const fs::path& entry, const fs::path& qroot, const std::string& key,
                       fs::path& dest) {
  std::error_code ec;
  fs::create_directories(qroot, ec);
  bool is_dir = fs::is_directory(fs::symlink_status(entry, ec));
  timespec ts = now_realtime();
  std::string stamp = utc_text(ts.tv_sec, "%Y%m%dT%H%M%S") + fmt::format(".{:09}Z", ts.tv_nsec);
  for (int attempt = 0; attempt < 100; ++attempt) {  // a same-nanosecond name is taken
    dest = qroot / (attempt == 0 ? key + "-" + stamp : fmt::format("{}-{}-{}", key, stamp, attempt));
    if (!is_dir && ::mkdir(dest.c_str(), 0755) != 0) {
      if (errno == EEXIST) continue;
      return errno;
    }
    fs::path target = is_dir ? dest : dest / "entry";
    if (::rename(entry.c_str(), target.c_str()) == 0) return 0;
    if (errno != EEXIST && errno != ENOTEMPTY) return errno;
  }
  return EEXIST;
}

}  // namespace

void KernelCache::quarantine_dir(const fs::path& dir, const std::string& key,
                                 const std::string& reason) {
  fs::path dest;
  int err = move_to_quarantine(dir, root_ / "quarantine", key, dest);
  if (err == ENOENT) return;  // someone else moved it first
  if (err != 0) {
    warn(fmt::format("plx: warning: cache entry {} could not be quarantined ({}): {}", key,
                     std::strerror(err), one_line(reason)));
    return;
  }
  try {
    write_file_durable(dest / "reason.txt", reason + "\n");
  } catch (const std::exception&) {
    // The move is what matters; the note is for humans.
  }
  ++counters_.quarantines;
  warn(fmt::format("plx: warning: cache entry {} quarantined: {} (moved to {})", key,
                   one_line(reason), dest.string()));
}

void KernelCache::quarantine(const std::string& key, const std::string& reason) {
  if (!is_key(key)) return;  // never build a path from something that is not a key
  {
    std::lock_guard lock(mu_);
    memory_.erase(key);
  }
  auto km = key_mutex(key);
  std::lock_guard key_guard(*km);
  std::optional<FileLock> lock = lock_key(key);
  for (const fs::path& arch : subdirs(root_ / fmt::format("v{}", kCacheSchemaVersion))) {
    fs::path dir = arch / key.substr(0, 2) / key;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir, ec))) quarantine_dir(dir, key, reason);
  }
}

// =======================================================================================
// Care commands

namespace {

struct FoundEntry {
  std::string arch, key;
  fs::path dir;
};

// Every <root>/v<schema>/<arch>/<xx>/<name>/ directory, sorted by path.
std::vector<FoundEntry> find_entries(const fs::path& root) {
  std::vector<FoundEntry> out;
  for (const fs::path& arch : subdirs(root / fmt::format("v{}", kCacheSchemaVersion)))
    for (const fs::path& prefix : subdirs(arch))
      for (const fs::path& dir : subdirs(prefix))
        out.push_back({arch.filename().string(), dir.filename().string(), dir});
  return out;
}

CacheEntryInfo info_of(const FoundEntry& e, const json::Value* manifest) {
  CacheEntryInfo info{e.key, "", e.arch, tree_bytes(e.dir), 0, e.dir};
  if (manifest == nullptr) return info;
  if (const json::Value* v = manifest->find("variant_name"); v && v->is_string())
    info.variant_name = v->as_string();
  if (const json::Value* v = manifest->find("created_unix"); v && v->is_int())
    info.created_unix = v->as_int();
  return info;
}

std::optional<json::Value> read_manifest(const fs::path& dir) {
  auto text = read_file(dir / kManifestFile);
  if (!text) return std::nullopt;
  try {
    return json::parse(*text);
  } catch (const json::ParseError&) {
    return std::nullopt;
  }
}

}  // namespace

std::vector<CacheEntryInfo> KernelCache::list() const {
  std::vector<CacheEntryInfo> out;
  for (const FoundEntry& e : find_entries(root_)) {
    auto manifest = read_manifest(e.dir);
    out.push_back(info_of(e, manifest ? &*manifest : nullptr));
  }
  std::sort(out.begin(), out.end(), [](const CacheEntryInfo& a, const CacheEntryInfo& b) {
    return std::tie(a.variant_name, a.key, a.arch) < std::tie(b.variant_name, b.key, b.arch);
  });
  return out;
}

// Re-checks under the key's locks first: a publisher may have replaced the bad entry
// with a good one since we looked, and that one must stay.
void KernelCache::quarantine_if_still_bad(const fs::path& dir, const std::string& key,
                                          const std::string& reason) {
  if (!is_key(key)) return quarantine_dir(dir, key, reason);  // no lock for a stray name
  auto km = key_mutex(key);
  std::lock_guard key_guard(*km);
  std::optional<FileLock> lock = lock_key(key);
  EntryRead again = read_entry(dir, key, nullptr, true);
  if (again.state == EntryRead::State::bad) quarantine_dir(dir, key, reason);
}

std::vector<CacheCheck> KernelCache::verify(bool quarantine_bad) {
  std::vector<CacheCheck> out;
  for (const FoundEntry& e : find_entries(root_)) {
    CacheCheck check{e.key, e.dir, false, ""};
    if (!is_key(e.key) || e.dir.parent_path().filename() != e.key.substr(0, 2)) {
      check.reason = "not a cache entry name";
    } else {
      EntryRead r = read_entry(e.dir, e.key, nullptr, true);
      check.ok = r.state == EntryRead::State::good;
      check.reason = r.reason;
    }
    if (!check.ok && quarantine_bad) quarantine_if_still_bad(e.dir, e.key, check.reason);
    out.push_back(std::move(check));
  }
  std::sort(out.begin(), out.end(),
            [](const CacheCheck& a, const CacheCheck& b) { return a.dir < b.dir; });
  return out;
}

namespace {

// What clear() removes: every v<schema> directory, the quarantine and the lock files.
std::vector<fs::path> clear_targets(const fs::path& root) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    bool schema_dir = name.size() > 1 && name[0] == 'v' &&
                      std::all_of(name.begin() + 1, name.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
    if (schema_dir || name == "quarantine" || name == "locks") out.push_back(it->path());
  }
  return out;
}

// The entry of `root` nearest to `w`: same variant name first, then most equal fields,
// then newest; ties keep the first in path order, so the answer is deterministic.
void find_nearest(const fs::path& root, const Fields& w, CacheExplanation& out) {
  std::tuple<bool, int, std::int64_t> best{false, -1, 0};
  for (const FoundEntry& e : find_entries(root)) {
    auto manifest = read_manifest(e.dir);
    if (!manifest) continue;
    try {
      Fields c = fields_of(*manifest);
      CacheEntryInfo info = info_of(e, &*manifest);
      std::tuple<bool, int, std::int64_t> score{c.variant_name == w.variant_name,
                                                equal_fields(w, c), info.created_unix};
      if (out.nearest && score <= best) continue;
      best = score;
      out.nearest = std::move(info);
      out.differences = differences(w, c);
    } catch (const json::TypeError&) {
      continue;  // an unreadable manifest cannot explain anything
    }
  }
}

}  // namespace

CacheClearResult KernelCache::clear() {
  {
    std::lock_guard lock(mu_);
    memory_.clear();
  }
  CacheClearResult result;
  for (const fs::path& dir : clear_targets(root_)) {
    // Rename first: after this one atomic step no reader can find a half-deleted entry;
    // the slow deletion happens in a private directory (swept later if interrupted).
    make_dirs(root_ / "tmp");
    fs::path away = root_ / "tmp" / tmp_name("clear");
    if (::rename(dir.c_str(), away.c_str()) != 0)
      throw CacheError(fmt::format("cannot clear {}: {}", dir.string(), std::strerror(errno)));
    if (dir.filename().string()[0] == 'v') {
      for (const fs::path& arch : subdirs(away))
        for (const fs::path& prefix : subdirs(arch)) result.entries += subdirs(prefix).size();
      result.bytes += tree_bytes(away);
    }
    std::error_code ec;
    fs::remove_all(away, ec);
  }
  return result;
}

CacheExplanation KernelCache::explain(const Manifest& wanted) const {
  using Status = CacheExplanation::Status;
  CacheExplanation out;
  out.key = wanted.key();
  {
    std::lock_guard lock(mu_);
    if (memory_.count(out.key)) {
      out.status = Status::memory_hit;
      return out;
    }
  }
  Fields w = fields_of(wanted);
  EntryRead r = read_entry(entry_dir(wanted), out.key, &w, false);
  if (r.state == EntryRead::State::missing) {
    out.status = Status::miss;
    find_nearest(root_, w, out);
  } else {
    out.status = r.state == EntryRead::State::good ? Status::disk_hit : Status::corrupt;
    out.reason = r.reason;
  }
  return out;
}

}  // namespace plx
