// plx db: look after the tuning databases in the cache directory (autotune/tuning_db.hpp):
// show them, move one between machines of the same kind (export / import, validated), or
// clear them. show and clear need no GPU; export and import act on this GPU's database.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "args.hpp"
#include "autotune/tuning_db.hpp"
#include "commands.hpp"
#include "common/fs_atomic.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kHelp = R"(Usage: plx db <show | export FILE | import FILE [--force] | clear>

The tuning databases: one JSON file per GPU in <cache dir>/tuning/v1/, written by
`plx tune` and read by plx::Engine, which runs each call's tuned winner. A database whose
identity (GPU, driver, NVRTC, templates, plx version) differs from the GPU at hand is
never used: the engine takes the model's choices until `plx tune` runs again.

  show            every database: its identity, whether it matches this GPU, its entries
  export FILE     write this GPU's database to FILE
  import FILE     merge FILE into this GPU's database (the faster winner per bucket stays);
                  a FILE tuned on another GPU, driver or template set is refused
    --force       import it anyway (its winners are still checked before every use)
  clear           remove every database (the compile cache is left alone)
)";

// The *.json databases of the schema this binary reads, sorted.
std::vector<fs::path> db_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".json") out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<GpuIdentity> this_gpu() {
  if (!cu::available()) return std::nullopt;
  cu::Device dev(0);
  return GpuIdentity::of(dev);
}

TuningDb this_gpu_db(const std::string& sub) {
  std::string why;
  if (!cu::available(&why))
    throw Error(fmt::format("db {}: no GPU ({}): export and import act on the database of the GPU at hand", sub,
                            why));
  cu::Device dev(0);
  return TuningDb(KernelCache::default_root(), GpuIdentity::of(dev));
}

std::string age(std::int64_t unix_s) {
  const std::int64_t s = std::int64_t(std::time(nullptr)) - unix_s;
  if (unix_s <= 0) return "?";
  if (s < 3600) return fmt::format("{}m", std::max<std::int64_t>(s / 60, 0));
  if (s < 86400 * 2) return fmt::format("{}h", s / 3600);
  return fmt::format("{}d", s / 86400);
}

int show() {
  const fs::path dir = TuningDb::dir(KernelCache::default_root());
  const auto files = db_files(dir);
  if (files.empty()) {
    fmt::print("no tuning database in {} (run plx tune on a GPU)\n", dir.string());
    return 0;
  }
  const auto mine = this_gpu();
  for (const fs::path& f : files) {
    fmt::print("{}\n", f.string());
    DbFile db;
    try {
      auto bytes = read_file(f);
      if (!bytes) throw Error("unreadable");
      db = parse_db(*bytes);
    } catch (const std::exception& e) {
      fmt::print("  corrupt: {} (the engine sets it aside on next use)\n\n", e.what());
      continue;
    }
    const char* match = !mine ? "no GPU here to compare with"
                        : db.identity == *mine ? "matches this GPU: in use"
                        : db.identity.key() == mine->key() ? "this GPU, other driver/NVRTC/templates/version: NOT used"
                                                           : "another GPU";
    fmt::print("  {}\n  {}; {} buckets\n", db.identity.describe(), match, db.entries.size());
    std::size_t wb = 6, ww = 6;
    for (const auto& [b, e] : db.entries) {
      wb = std::max(wb, b.size());
      ww = std::max(ww, e.winner.size());
    }
    if (!db.entries.empty())
      fmt::print("  {:<{}}  {:<{}}  {:>9}  {:>9}  {:>10}  {:>4}\n", "bucket", wb, "winner", ww, "us", "pred_us",
                 "runner-up", "age");
    for (const auto& [b, e] : db.entries)
      fmt::print("  {:<{}}  {:<{}}  {:>9.2f}  {:>9.2f}  {:>10}  {:>4}\n", b, wb, e.winner, ww, e.winner_us,
                 e.predicted_us, e.runner_up.empty() ? "-" : fmt::format("{:.2f}", e.runner_up_us),
                 age(e.measured_at));
    fmt::print("\n");
  }
  return 0;
}

int clear() {
  const fs::path dir = TuningDb::dir(KernelCache::default_root());
  int n = 0;
  for (const fs::path& f : db_files(dir)) {
    FileLock lock(f.string() + ".lock");  // never under a tuner's merge
    std::error_code ec;
    if (fs::remove(f, ec)) ++n;
    if (ec) throw Error(fmt::format("db clear: cannot remove {}: {}", f.string(), ec.message()));
  }
  fmt::print("removed {} tuning database{} from {}\n", n, n == 1 ? "" : "s", dir.string());
  return 0;
}

}  // namespace

int cmd_db(const std::vector<std::string>& argv) {
  const Args a = parse(argv, {{"force", false}}, "db");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (a.positional.empty()) throw UsageError("db: which subcommand? show, export FILE, import FILE, clear");
  const std::string sub = a.positional[0];
  const std::size_t want = sub == "export" || sub == "import" ? 2 : 1;
  if (sub != "show" && sub != "export" && sub != "import" && sub != "clear")
    throw UsageError(fmt::format("db: unknown subcommand '{}' (show, export FILE, import FILE, clear)", sub));
  if (a.positional.size() != want)
    throw UsageError(want == 2 ? fmt::format("db {}: give exactly one FILE", sub)
                               : fmt::format("db {}: takes no arguments", sub));
  if (a.has("force") && sub != "import") throw UsageError("db: --force applies to import only");
  if (sub == "show") return show();
  if (sub == "clear") return clear();
  TuningDb db = this_gpu_db(sub);
  if (sub == "export") {
    db.load();
    db.export_to(a.positional[1]);
    fmt::print("exported {} buckets of {} to {}\n", db.entries().size(), db.identity().describe(), a.positional[1]);
    return 0;
  }
  const std::size_t n = db.import_from(a.positional[1], a.has("force"));
  fmt::print("imported {} buckets into {} ({} in all)\n", n, db.path().string(), db.entries().size());
  return 0;
}

}  // namespace plx::cli
