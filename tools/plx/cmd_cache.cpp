// plx cache: look after the on-disk cubin cache (runtime/kernel_cache.hpp): list it,
// verify it, clear it, and explain why a variant would miss it.
#include <fmt/format.h>

#include <ctime>

#include "args.hpp"
#include "commands.hpp"
#include "generator/render.hpp"
#include "generator/variant.hpp"
#include "runtime/jit.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx cache <action> [options]

Actions:
  ls                      one line per entry: variant, arch, size, age, key prefix; total
  verify [--fix]          check every entry (manifest, key, cubin checksum, source); one
                          line per bad entry, exit 1 if any; --fix quarantines them
  clear                   remove every entry (all schemas), the quarantine and the locks
  explain VARIANT [--arch ARCH]
                          render VARIANT, build its cache key, and say whether it is a
                          memory/disk hit, corrupt, or a miss: then the nearest entry and
                          the fields that differ (ARCH defaults to the variant's own)

The cache lives in $PLX_CACHE_DIR, else $XDG_CACHE_HOME/parallax-jit, else
~/.cache/parallax-jit.
)";

std::string human_bytes(double b) {
  if (b < 1024) return fmt::format("{:.0f} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", b / 1024);
  if (b < 1024.0 * 1024 * 1024) return fmt::format("{:.1f} MiB", b / (1024 * 1024));
  return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
}

std::string age(std::int64_t created_unix) {
  if (created_unix <= 0) return "?";
  const std::int64_t s = std::max<std::int64_t>(0, std::int64_t(std::time(nullptr)) - created_unix);
  if (s < 120) return fmt::format("{}s", s);
  if (s < 2 * 3600) return fmt::format("{}m", s / 60);
  if (s < 2 * 86400) return fmt::format("{}h", s / 3600);
  return fmt::format("{}d", s / 86400);
}

const char* status_name(CacheExplanation::Status s) {
  switch (s) {
    case CacheExplanation::Status::memory_hit: return "memory hit";
    case CacheExplanation::Status::disk_hit: return "disk hit";
    case CacheExplanation::Status::corrupt: return "corrupt";
    case CacheExplanation::Status::miss: return "miss";
  }
  return "?";
}

int ls(KernelCache& cache) {
  const auto entries = cache.list();
  std::size_t w = 7;
  for (const auto& e : entries) w = std::max(w, e.variant_name.size());
  fmt::print("{:<{}}  {:<7}  {:>10}  {:>5}  {}\n", "variant", w, "arch", "size", "age", "key");
  std::uint64_t total = 0;
  for (const auto& e : entries) {
    total += e.size_bytes;
    fmt::print("{:<{}}  {:<7}  {:>10}  {:>5}  {}\n", e.variant_name.empty() ? "(unreadable)" : e.variant_name, w,
               e.arch, human_bytes(double(e.size_bytes)), age(e.created_unix), e.key.substr(0, 12));
  }
  fmt::print("{} entries, {} in {}\n", entries.size(), human_bytes(double(total)), cache.root().string());
  return 0;
}

int verify(KernelCache& cache, bool fix) {
  const auto checks = cache.verify(fix);
  std::size_t bad = 0;
  for (const auto& c : checks) {
    if (c.ok) continue;
    ++bad;
    fmt::print("bad {} {}: {}{}\n", c.key.substr(0, 12), c.dir.string(), c.reason, fix ? " (quarantined)" : "");
  }
  fmt::print("{} entries checked, {} bad{}\n", checks.size(), bad,
             bad && !fix ? " (plx cache verify --fix quarantines them)" : "");
  return bad ? 1 : 0;
}

int clear(KernelCache& cache) {
  const CacheClearResult r = cache.clear();
  fmt::print("removed {} entries ({}) from {}\n", r.entries, human_bytes(double(r.bytes)), cache.root().string());
  return 0;
}

int explain(KernelCache& cache, const std::string& name, const std::optional<std::string>& arch_flag) {
  const auto v = parse_variant_name(name);
  if (!v)
    throw UsageError(fmt::format("cache explain: '{}' is not a variant name (e.g. "
                                 "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_sm90a)",
                                 name));
  std::string arch(to_string(v->arch));
  if (arch_flag) {
    const auto a = parse_arch(*arch_flag);
    if (!a) throw UsageError(fmt::format("cache explain: --arch '{}' is not sm_80 or sm_90a", *arch_flag));
    arch = to_string(*a);
  }
  const RenderedKernel r = render(*v);  // UnsupportedError for an illegal variant
  const CacheExplanation e = cache.explain(manifest_for(r, arch));
  fmt::print("{} ({}): {}, key {}\n", name, arch, status_name(e.status), e.key.substr(0, 12));
  if (e.status == CacheExplanation::Status::corrupt) fmt::print("  reason: {}\n", e.reason);
  if (e.status != CacheExplanation::Status::miss) return 0;
  if (!e.nearest) {
    fmt::print("  reason: the cache holds no entries ({})\n", cache.root().string());
    return 0;
  }
  fmt::print("  nearest: {} ({}), key {}\n", e.nearest->variant_name, e.nearest->arch, e.nearest->key.substr(0, 12));
  for (const std::string& d : e.differences) fmt::print("  differs: {}\n", d);
  return 0;
}

}  // namespace

int cmd_cache(const std::vector<std::string>& argv) {
  const Args a = parse(argv, {{"fix", false}, {"arch", true}}, "cache");
  if (a.has("help") || a.positional.empty()) {
    if (!a.has("help")) throw UsageError("cache: no action given (ls, verify, clear, explain; see plx cache --help)");
    fmt::print("{}", kHelp);
    return 0;
  }
  const std::string& action = a.positional[0];
  const std::size_t want_args = action == "explain" ? 2 : 1;
  if (action != "ls" && action != "verify" && action != "clear" && action != "explain")
    throw UsageError(fmt::format("cache: unknown action '{}' (ls, verify, clear, explain)", action));
  if (a.positional.size() < want_args) throw UsageError("cache explain: which variant? (plx cache explain VARIANT)");
  if (a.positional.size() > want_args)
    throw UsageError(fmt::format("cache {}: unexpected argument '{}'", action, a.positional[want_args]));
  if (a.has("fix") && action != "verify") throw UsageError("cache: --fix goes with verify");
  if (a.has("arch") && action != "explain") throw UsageError("cache: --arch goes with explain");

  KernelCache cache(KernelCache::default_root());
  if (action == "ls") return ls(cache);
  if (action == "verify") return verify(cache, a.has("fix"));
  if (action == "clear") return clear(cache);
  return explain(cache, a.positional[1], a.get("arch"));
}

}  // namespace plx::cli
