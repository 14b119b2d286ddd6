// plx db: look after the tuning databases in the cache directory (autotune/tuning_db.hpp):
// show them, move one between machines of the same kind (export / import, validated),
// compare two of them (do two tunes agree? autotune/db_compare.hpp), or clear them. show,
// compare and clear need no GPU; export and import act on this GPU's database.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <utility>

#include "args.hpp"
#include "autotune/db_compare.hpp"
#include "autotune/measure.hpp"
#include "autotune/tuning_db.hpp"
#include "commands.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "runtime/driver.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kHelp = R"(Usage: plx db <show | export FILE | import FILE [--force] | compare A B [--json FILE] | clear>

The tuning databases: one JSON file per GPU in <cache dir>/tuning/v1/, written by
`plx tune` and read by plx::Engine, which runs each call's tuned winner. A database whose
identity (GPU, driver, NVRTC, templates, plx version) differs from the GPU at hand is
never used: the engine takes the model's choices until `plx tune` runs again.

  show            every database: its identity, whether it matches this GPU, its entries
  export FILE     write this GPU's database to FILE
  import FILE     merge FILE into this GPU's database (the faster winner per bucket stays);
                  a FILE tuned on another GPU, driver or template set is refused
    --force       import it anyway (its winners are still checked before every use)
  compare A B     do two tunes agree? A and B are database files (<cache dir>/tuning/v1/
                  *.json or plx db export output). Per bucket in both: "same" winner;
                  "tied": other winners whose times differ by no more than the noise the
                  tuner recorded (the larger of the two, at least 1% of the faster, as
                  the tuner ties candidates; a database from `plx tune --repeat` adds its
                  measured between-run reproducibility, repro_rel x the faster time);
                  else "disagree". Column "by" names the term that set the noise:
                  floor, noise_a/noise_b (recorded), repro_a/repro_b. Buckets in one file only
                  are listed apart. Exit 0 when every bucket of either file is in both
                  and agrees, 1 otherwise. Tune the two runs into separate cache dirs
                  (PLX_CACHE_DIR): a tune merges into the file there, keeping the faster
                  winner per bucket, so one file cannot hold two runs.
    --json FILE   also write the comparison as JSON
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
    if (db.repro)
      fmt::print("  reproducibility (plx tune --repeat): repro_rel {:.2f}% (p90), median {:.2f}%, {} buckets\n",
                 100 * db.repro->rel, 100 * db.repro->median_rel, db.repro->buckets);
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

std::string verdict_note(const BucketComparison& x) {
  std::string n;
  if (x.verdict == Agreement::same_winner && x.beyond_noise) n = "time moved beyond the noise";
  if (x.swapped) n = "each won as the other's runner-up";
  return n;
}

int compare(const std::string& path_a, const std::string& path_b, const std::optional<std::string>& json_out) {
  const DbFile a = read_db_file(path_a), b = read_db_file(path_b);  // plx::Error naming the file
  fmt::print("A: {}\n   {}; {} buckets\n", path_a, a.identity.describe(), a.entries.size());
  fmt::print("B: {}\n   {}; {} buckets\n", path_b, b.identity.describe(), b.entries.size());
  if (a.identity.key() != b.identity.key())
    fmt::print("note: A and B were tuned on different GPUs; their winners need not agree\n");
  else if (!(a.identity == b.identity))
    fmt::print("note: same GPU, but other driver/NVRTC/templates/version: the kernels timed differ\n");
  for (const auto& [name, f] : {std::pair{"A", &a}, std::pair{"B", &b}}) {
    if (f->repro)
      fmt::print("{}: reproducibility repro_rel {:.2f}% (p90 of |repeat - winner| / winner over {} buckets, median "
                 "{:.2f}%): part of the noise\n",
                 name, 100 * f->repro->rel, f->repro->buckets, 100 * f->repro->median_rel);
    else
      fmt::print("{}: no reproducibility measured (tuned with --no-repeat): recorded noise and the floor only\n", name);
  }
  const DbComparison c = compare_dbs(a, b);
  if (!c.both.empty()) {
    std::size_t kw = 6, wa = 8;
    for (const BucketComparison& x : c.both) {
      kw = std::max(kw, x.bucket.size());
      wa = std::max(wa, x.a.winner.size());
    }
    fmt::print("\n{:<{}}  {:<8}  {:>9}  {:>9}  {:>8}  {:>7}  {:<7}  {:<{}}  {}\n", "bucket", kw, "verdict", "us_A",
               "us_B", "B-A", "noise", "by", "winner A", wa, "winner B (= same)");
    for (const BucketComparison& x : c.both) {
      const double base = std::min(x.a.winner_us, x.b.winner_us);
      // Both as a percentage of the faster time; "-" when a time is unknown (0).
      const auto pct = [&](double v, bool sign) {
        if (!(base > 0)) return std::string("-");
        return sign ? fmt::format("{:+.2f}%", 100 * v / base) : fmt::format("{:.2f}%", 100 * v / base);
      };
      const std::string note = verdict_note(x);
      fmt::print("{:<{}}  {:<8}  {:>9.2f}  {:>9.2f}  {:>8}  {:>7}  {:<7}  {:<{}}  {}{}\n", x.bucket, kw,
                 to_string(x.verdict), x.a.winner_us, x.b.winner_us, pct(x.diff_us, true), pct(x.noise_us, false),
                 measure::to_string(x.noise_by), x.a.winner, wa, x.verdict == Agreement::same_winner ? "=" : x.b.winner,
                 note.empty() ? "" : "  (" + note + ")");
    }
  }
  for (const auto& [name, keys] : {std::pair{"A", &c.only_a}, std::pair{"B", &c.only_b}}) {
    if (keys->empty()) continue;
    fmt::print("\nonly in {} ({} buckets):\n", name, keys->size());
    for (const std::string& k : *keys) fmt::print("  {}\n", k);
  }
  if (json_out) {
    json::Value j = to_json(c);
    j.set("a", path_a);
    j.set("b", path_b);
    write_file_atomic(*json_out, j.dump(2) + "\n");
    fmt::print("\nwrote {}\n", *json_out);
  }
  fmt::print("\n");
  if (c.same_beyond_noise > 0)
    fmt::print("{} bucket{} kept the winner, but its time moved by more than the noise between the runs\n",
               c.same_beyond_noise, c.same_beyond_noise == 1 ? "" : "s");
  if (c.repro_a || c.repro_b) {
    std::map<std::string, int> by;
    for (const BucketComparison& x : c.both) ++by[measure::to_string(x.noise_by)];
    std::string terms;
    for (const auto& [t, n] : by) terms += fmt::format("{}{} {}", terms.empty() ? "" : ", ", t, n);
    fmt::print("noise decided by: {}\n", terms.empty() ? "-" : terms);
    fmt::print("the reproducibility term tied {} disagreement{} of the within-run rule and kept {} same winner{} "
               "within the noise\n",
               c.tied_by_repro, c.tied_by_repro == 1 ? "" : "s", c.same_within_by_repro,
               c.same_within_by_repro == 1 ? "" : "s");
  }
  if (!c.only_a.empty() || !c.only_b.empty())
    fmt::print("only in A: {} buckets, only in B: {} buckets\n", c.only_a.size(), c.only_b.size());
  if (c.both.empty()) fmt::print("no bucket is in both databases: nothing to compare\n");
  fmt::print("{}\n", c.summary());
  return c.all_agree() ? 0 : 1;
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
  const Args a = parse(argv, {{"force", false}, {"json", true}}, "db");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  constexpr const char* kSubs = "show, export FILE, import FILE, compare A B, clear";
  if (a.positional.empty()) throw UsageError(fmt::format("db: which subcommand? {}", kSubs));
  const std::string sub = a.positional[0];
  const std::size_t want = sub == "export" || sub == "import" ? 2 : sub == "compare" ? 3 : 1;
  if (sub != "show" && sub != "export" && sub != "import" && sub != "compare" && sub != "clear")
    throw UsageError(fmt::format("db: unknown subcommand '{}' ({})", sub, kSubs));
  if (a.positional.size() != want)
    throw UsageError(want == 3   ? "db compare: give two database files, A and B"
                     : want == 2 ? fmt::format("db {}: give exactly one FILE", sub)
                                 : fmt::format("db {}: takes no arguments", sub));
  if (a.has("force") && sub != "import") throw UsageError("db: --force applies to import only");
  if (a.has("json") && sub != "compare") throw UsageError("db: --json applies to compare only");
  if (sub == "compare") return compare(a.positional[1], a.positional[2], a.get("json"));
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
