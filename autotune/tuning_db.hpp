// The per-GPU tuning database (issue 6, point 5): the measured winner of every problem
// bucket, one versioned JSON file per GPU identity in the cache directory,
//
//   <cache root>/tuning/v1/<identity.key()>.json       (+ .lock next to it)
//
// The file name holds only the hardware (name, compute capability, SM count); the file
// holds the full identity. A file whose identity differs in anything (driver, NVRTC,
// template hash, project version) is the same GPU after an upgrade: its winners were
// measured on other code, so it is never used ("retune", never "reuse") and the engine
// says so once. `plx tune` then replaces it (the old file is kept as .replaced-<time>).
//
// Contract: reading never throws and never crashes on any file content. A file that does
// not parse or has the wrong schema is moved aside to <file>.corrupt-<unix time> with
// one warning line and treated as empty. Writers merge under an exclusive lock (re-read,
// merge, atomic replace), so concurrent tuners never lose each other's entries.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autotune/ceilings.hpp"

namespace plx {

namespace cu {
class Device;
}

inline constexpr int kTuningDbVersion = 1;  // bump when entries or keys change meaning

// Everything that decides whether a measured winner still holds.
struct GpuIdentity {
  std::string name;  // "NVIDIA H200"
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int driver_version = 0;     // cuDriverGetVersion, e.g. 13000
  std::string nvrtc_version;  // "13.0"
  std::string template_hash;  // sha256 of every embedded header (template_hash())
  std::string project_version = PLX_VERSION;

  // The file name stem: hardware only, filename-safe ([A-Za-z0-9._-]), e.g.
  //   "NVIDIA_H200-sm90-132sm"
  std::string key() const;
  // One line for messages, e.g.
  //   "NVIDIA H200 (sm 9.0, 132 SMs, driver 13000, NVRTC 13.0, templates 3f2a9c1e, plx 0.1.0)"
  std::string describe() const;
  bool operator==(const GpuIdentity&) const = default;

  // This process's view of device d (driver, NVRTC, templates, version). Throws what the
  // driver throws.
  static GpuIdentity of(const cu::Device& d);
};

// sha256 over the embedded template headers (names and contents, length-prefixed).
const std::string& template_hash();

struct DbEntry {
  std::string bucket;  // tune::BucketId::key()
  std::string winner;  // variant name
  double winner_us = 0;
  std::string runner_up;  // empty when only one candidate was measured
  double runner_up_us = 0;
  double predicted_us = 0;  // the roofline model's time for the winner
  double noise_us = 0;      // the measurement noise the winner was decided with (0: unknown)
  double repeat_us = 0;     // the winner re-timed by `plx tune --repeat` (0: not repeated)
  std::int64_t measured_at = 0;  // unix seconds
  std::string notes;  // e.g. the spec and the bucket's flags
  bool operator==(const DbEntry&) const = default;
};

// How far this GPU's medians move between runs of the tuner's harness, measured by
// `plx tune --repeat` (measure::reproducibility over its buckets' (winner_us, repeat_us)).
// Stored per database as "repro_rel" (the p90: the term `plx db compare` adds to the
// noise), "repro_median_rel" and "repro_buckets". Absent in databases of tunes without
// --repeat (and of binaries before it): they load as before, with no such term.
struct DbRepro {
  double rel = 0;         // p90 of |repeat - winner| / winner
  double median_rel = 0;
  int buckets = 0;        // pairs it was computed over
  bool operator==(const DbRepro&) const = default;
};

enum class DbStatus {
  ok,                 // loaded (possibly with no entries)
  missing,            // no file: nothing tuned yet
  corrupt,            // the file was unreadable as a database and has been set aside
  identity_mismatch,  // a database of another driver/templates/version: not used
};
const char* to_string(DbStatus s);

class TuningDb {
 public:
  // `cache_root`: KernelCache::default_root() or EngineOptions::cache_dir.
  TuningDb(std::filesystem::path cache_root, GpuIdentity identity);

  static std::filesystem::path dir(const std::filesystem::path& cache_root);  // <root>/tuning/v1
  const std::filesystem::path& path() const { return path_; }
  const GpuIdentity& identity() const { return identity_; }

  // Reads the file. Never throws. On identity_mismatch the entries are dropped (lookups
  // return nothing) and file_identity() tells whose database it is.
  DbStatus load();
  DbStatus status() const { return status_; }
  const std::optional<GpuIdentity>& file_identity() const { return file_identity_; }

  std::optional<DbEntry> lookup(const std::string& bucket) const;
  const std::map<std::string, DbEntry>& entries() const { return entries_; }

  // Merges `entries` into the file under its lock: re-read, keep the faster winner per
  // bucket, atomic replace. A corrupt or other-identity file is set aside first. The
  // in-memory view becomes the merged file. Throws IoError when the disk refuses.
  // `ceilings`, when given, replace the file's (they are the GPU's, not a bucket's); so
  // does `repro` (the latest --repeat tune's measurement of this GPU's reproducibility).
  void record(const std::vector<DbEntry>& entries, const std::optional<Ceilings>& ceilings = std::nullopt,
              const std::optional<DbRepro>& repro = std::nullopt);

  // The GPU's measured ceilings (autotune/ceilings.hpp), when a tune has stored them.
  const std::optional<Ceilings>& ceilings() const { return ceilings_; }
  // The reproducibility a `plx tune --repeat` stored, if any.
  const std::optional<DbRepro>& repro() const { return repro_; }

  // Writes this database (identity and entries, as loaded) to `file`. Throws plx::Error
  // when there is nothing usable to export.
  void export_to(const std::filesystem::path& file) const;
  // Merges the database in `file` into this one (as record()); returns the entries read.
  // Throws plx::Error for a file that is not a database, or one of another identity
  // unless `force`.
  std::size_t import_from(const std::filesystem::path& file, bool force = false);
  // Removes the file (under its lock). Returns whether there was one.
  bool clear();

  // Where warnings go (default: one write() to stderr). One line per call, no '\n'.
  void set_warning_sink(std::function<void(const std::string&)> sink) { sink_ = std::move(sink); }

 private:
  void warn(const std::string& line) const;

  std::filesystem::path path_;
  GpuIdentity identity_;
  DbStatus status_ = DbStatus::missing;
  std::optional<GpuIdentity> file_identity_;
  std::map<std::string, DbEntry> entries_;
  std::optional<Ceilings> ceilings_;
  std::optional<DbRepro> repro_;
  std::function<void(const std::string&)> sink_;
};

// Serialisation, exposed for tests and `plx db show`. parse_db throws plx::Error with a
// one-line reason for anything that is not a version-1 database.
struct DbFile {
  GpuIdentity identity;
  std::map<std::string, DbEntry> entries;
  std::optional<Ceilings> ceilings;  // "ceilings" object; absent in files of older tunes
  std::optional<DbRepro> repro;      // "repro_rel" & co.; absent unless a tune ran --repeat
};
std::string dump_db(const DbFile& f);
DbFile parse_db(const std::string& text);
// parse_db of a file's content. Throws plx::Error naming the file: "cannot read F", or
// "F is not a tuning database: <reason>".
DbFile read_db_file(const std::filesystem::path& file);

// The faster of two winners for one bucket (a keeps ties: the incumbent stays).
const DbEntry& faster(const DbEntry& a, const DbEntry& b);

}  // namespace plx
