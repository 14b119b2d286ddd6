#include "autotune/tuning_db.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "common/sha256.hpp"
#include "generator/render.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"

namespace plx {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSchema = "parallax-jit tuning database";

[[noreturn]] void bad(const std::string& what) { throw Error(what); }

const json::Value& field(const json::Value& o, const char* key, const std::string& where) {
  const json::Value* v = o.find(key);
  if (!v) bad(fmt::format("{}.{} is missing", where, key));
  return *v;
}
std::string get_str(const json::Value& o, const char* key, const std::string& where) {
  const json::Value& v = field(o, key, where);
  if (!v.is_string()) bad(fmt::format("{}.{} is not a string", where, key));
  return v.as_string();
}
std::int64_t get_int(const json::Value& o, const char* key, const std::string& where) {
  const json::Value& v = field(o, key, where);
  if (!v.is_number() || !v.is_int()) bad(fmt::format("{}.{} is not an integer", where, key));
  return v.as_int();
}
double get_num(const json::Value& o, const char* key, const std::string& where) {
  const json::Value& v = field(o, key, where);
  if (!v.is_number() || !std::isfinite(v.as_double()) || v.as_double() < 0)
    bad(fmt::format("{}.{} is not a non-negative number", where, key));
  return v.as_double();
}

std::int64_t now_unix() { return std::int64_t(std::time(nullptr)); }

// `<file>.<tag>-<unix time>`, with a counter when that name is taken (same second).
fs::path aside_name(const fs::path& file, const char* tag) {
  const std::string base = fmt::format("{}.{}-{}", file.string(), tag, now_unix());
  fs::path p = base;
  std::error_code ec;
  for (int i = 1; fs::exists(p, ec); ++i) p = fmt::format("{}.{}", base, i);
  return p;
}

fs::path lock_path(const fs::path& file) { return file.string() + ".lock"; }

struct Read {
  DbStatus status = DbStatus::missing;
  std::string bytes;
  std::string error;  // corrupt: why
  std::optional<DbFile> db;
};

Read read_db(const fs::path& file, const GpuIdentity& want) {
  Read r;
  auto bytes = read_file(file);
  if (!bytes) return r;
  r.bytes = std::move(*bytes);
  try {
    r.db = parse_db(r.bytes);
  } catch (const std::exception& e) {
    r.status = DbStatus::corrupt;
    r.error = e.what();
    return r;
  }
  r.status = r.db->identity == want ? DbStatus::ok : DbStatus::identity_mismatch;
  return r;
}

}  // namespace

// ---- identity ----

std::string GpuIdentity::key() const {
  std::string safe;
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    safe += ok ? c : '_';
  }
  if (safe.empty()) safe = "gpu";
  return fmt::format("{}-sm{}{}-{}sm", safe, cc_major, cc_minor, sm_count);
}

std::string GpuIdentity::describe() const {
  return fmt::format("{} (sm {}.{}, {} SMs, driver {}, NVRTC {}, templates {}, plx {})", name, cc_major, cc_minor,
                     sm_count, driver_version, nvrtc_version, template_hash.substr(0, 8), project_version);
}

GpuIdentity GpuIdentity::of(const cu::Device& d) {
  GpuIdentity id;
  id.name = d.name();
  id.cc_major = d.cc_major();
  id.cc_minor = d.cc_minor();
  id.sm_count = d.sm_count();
  id.driver_version = cu::api().driver_version;
  id.nvrtc_version = plx::nvrtc_version();
  id.template_hash = plx::template_hash();
  return id;
}

const std::string& template_hash() {
  // Names and contents, length-prefixed, in the embedded (sorted, stable) order: any edit
  // of any header changes the hash, and no two header sets share one.
  static const std::string hash = [] {
    Sha256 h;
    for (const auto& [name, content] : template_headers()) {
      h.update(fmt::format("{}:{}\n", name.size(), name));
      h.update(fmt::format("{}:", content.size()));
      h.update(content);
    }
    return h.hex_digest();
  }();
  return hash;
}

const char* to_string(DbStatus s) {
  switch (s) {
    case DbStatus::ok: return "ok";
    case DbStatus::missing: return "missing";
    case DbStatus::corrupt: return "corrupt";
    case DbStatus::identity_mismatch: return "identity mismatch";
  }
  return "?";
}

// ---- file format ----

std::string dump_db(const DbFile& f) {
  json::Value r = json::Value::object();
  r.set("schema", kSchema);
  r.set("version", kTuningDbVersion);
  const GpuIdentity& i = f.identity;
  json::Value id = json::Value::object();
  id.set("name", i.name);
  id.set("cc_major", i.cc_major);
  id.set("cc_minor", i.cc_minor);
  id.set("sm_count", i.sm_count);
  id.set("driver_version", i.driver_version);
  id.set("nvrtc_version", i.nvrtc_version);
  id.set("template_hash", i.template_hash);
  id.set("project_version", i.project_version);
  r.set("identity", std::move(id));
  if (f.ceilings) r.set("ceilings", ceilings_to_json(*f.ceilings));
  if (f.repro) {
    r.set("repro_rel", f.repro->rel);
    r.set("repro_median_rel", f.repro->median_rel);
    r.set("repro_buckets", f.repro->buckets);
  }
  json::Value entries = json::Value::object();
  for (const auto& [bucket, e] : f.entries) {  // std::map: sorted, so files diff cleanly
    json::Value o = json::Value::object();
    o.set("winner", e.winner);
    o.set("winner_us", e.winner_us);
    o.set("runner_up", e.runner_up.empty() ? json::Value() : json::Value(e.runner_up));
    o.set("runner_up_us", e.runner_up.empty() ? json::Value() : json::Value(e.runner_up_us));
    o.set("predicted_us", e.predicted_us);
    if (e.noise_us > 0) o.set("noise_us", e.noise_us);
    if (e.repeat_us > 0) o.set("repeat_us", e.repeat_us);
    o.set("measured_at", e.measured_at);
    o.set("notes", e.notes);
    entries.set(bucket, std::move(o));
  }
  r.set("entries", std::move(entries));
  return r.dump(2) + "\n";
}

DbFile parse_db(const std::string& text) {
  const json::Value r = json::parse(text);  // ParseError is a plx::Error with one line
  if (!r.is_object()) bad("not a JSON object");
  if (get_str(r, "schema", "db") != kSchema) bad(fmt::format("schema is not '{}'", kSchema));
  if (const std::int64_t v = get_int(r, "version", "db"); v != kTuningDbVersion)
    bad(fmt::format("version {} is not {}", v, kTuningDbVersion));
  DbFile f;
  const json::Value& id = field(r, "identity", "db");
  if (!id.is_object()) bad("db.identity is not an object");
  f.identity.name = get_str(id, "name", "identity");
  f.identity.cc_major = int(get_int(id, "cc_major", "identity"));
  f.identity.cc_minor = int(get_int(id, "cc_minor", "identity"));
  f.identity.sm_count = int(get_int(id, "sm_count", "identity"));
  f.identity.driver_version = int(get_int(id, "driver_version", "identity"));
  f.identity.nvrtc_version = get_str(id, "nvrtc_version", "identity");
  f.identity.template_hash = get_str(id, "template_hash", "identity");
  f.identity.project_version = get_str(id, "project_version", "identity");
  if (const json::Value* c = r.find("ceilings"); c && !c->is_null()) {
    if (!c->is_object()) bad("db.ceilings is not an object");
    Ceilings x;
    x.copy_GBps = get_num(*c, "copy_GBps", "ceilings");
    x.tc_tflops = get_num(*c, "tc_tflops", "ceilings");
    x.mma_sync_tflops = get_num(*c, "mma_sync_tflops", "ceilings");
    x.wgmma_tflops = get_num(*c, "wgmma_tflops", "ceilings");
    x.tc_kernel = get_str(*c, "tc_kernel", "ceilings");
    x.measured_at = get_int(*c, "measured_at", "ceilings");
    if (!x.valid()) bad("db.ceilings has a zero bandwidth or tensor-core rate");
    f.ceilings = x;
  }
  // Optional fields (added with plx tune --repeat; version 1 files without them load as
  // before, and binaries before them ignore them).
  if (const json::Value* rr = r.find("repro_rel"); rr && !rr->is_null()) {
    DbRepro x;
    x.rel = get_num(r, "repro_rel", "db");
    if (r.find("repro_median_rel")) x.median_rel = get_num(r, "repro_median_rel", "db");
    if (r.find("repro_buckets")) x.buckets = int(get_int(r, "repro_buckets", "db"));
    f.repro = x;
  }
  const json::Value& entries = field(r, "entries", "db");
  if (!entries.is_object()) bad("db.entries is not an object");
  for (const auto& [bucket, o] : entries.as_object()) {
    const std::string where = "entries." + bucket;
    if (!o.is_object()) bad(where + " is not an object");
    DbEntry e;
    e.bucket = bucket;
    e.winner = get_str(o, "winner", where);
    if (e.winner.empty()) bad(where + ".winner is empty");
    e.winner_us = get_num(o, "winner_us", where);
    if (const json::Value* ru = o.find("runner_up"); ru && !ru->is_null()) {
      e.runner_up = get_str(o, "runner_up", where);
      e.runner_up_us = get_num(o, "runner_up_us", where);
    }
    e.predicted_us = get_num(o, "predicted_us", where);
    if (o.find("noise_us")) e.noise_us = get_num(o, "noise_us", where);
    if (o.find("repeat_us")) e.repeat_us = get_num(o, "repeat_us", where);
    e.measured_at = get_int(o, "measured_at", where);
    e.notes = get_str(o, "notes", where);
    f.entries.emplace(bucket, std::move(e));
  }
  return f;
}

DbFile read_db_file(const fs::path& file) {
  auto bytes = read_file(file);
  if (!bytes) throw Error(fmt::format("cannot read {}", file.string()));
  try {
    return parse_db(*bytes);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{} is not a tuning database: {}", file.string(), e.what()));
  }
}

const DbEntry& faster(const DbEntry& a, const DbEntry& b) {
  // A time of 0 means "not measured": any measurement beats it.
  if (a.winner_us <= 0) return b.winner_us > 0 ? b : a;
  return b.winner_us > 0 && b.winner_us < a.winner_us ? b : a;
}

// ---- the database ----

TuningDb::TuningDb(fs::path cache_root, GpuIdentity identity)
    : path_(dir(cache_root) / (identity.key() + ".json")), identity_(std::move(identity)) {}

fs::path TuningDb::dir(const fs::path& cache_root) {
  return cache_root / "tuning" / fmt::format("v{}", kTuningDbVersion);
}

void TuningDb::warn(const std::string& line) const {
  if (sink_) return sink_(line);
  const std::string s = "parallax-jit: " + line + "\n";
  (void)!::write(2, s.data(), s.size());
}

DbStatus TuningDb::load() {
  entries_.clear();
  ceilings_.reset();
  repro_.reset();
  file_identity_.reset();
  try {
    Read r = read_db(path_, identity_);
    if (r.status == DbStatus::corrupt) {
      // Set aside under the lock, and only if the file still holds the bytes we judged:
      // a tuner may have replaced it with a good one meanwhile.
      fs::path away;
      try {
        FileLock lock(lock_path(path_));
        if (read_file(path_) == r.bytes) {
          away = aside_name(path_, "corrupt");
          if (::rename(path_.c_str(), away.c_str()) != 0) away.clear();
        }
      } catch (const std::exception&) {
        // read-only cache directory: leave the file, still treat it as empty
      }
      warn(fmt::format("tuning database {} is corrupt ({}); {}; using the model's choices", path_.string(),
                       r.error, away.empty() ? "left in place" : "moved to " + away.string()));
    } else if (r.db) {
      file_identity_ = r.db->identity;
      if (r.status == DbStatus::ok) {
        entries_ = std::move(r.db->entries);
        ceilings_ = r.db->ceilings;
        repro_ = r.db->repro;
      }
    }
    status_ = r.status;
  } catch (const std::exception& e) {
    warn(fmt::format("tuning database {} unreadable ({}); using the model's choices", path_.string(), e.what()));
    entries_.clear();
    status_ = DbStatus::corrupt;
  }
  return status_;
}

std::optional<DbEntry> TuningDb::lookup(const std::string& bucket) const {
  if (status_ != DbStatus::ok) return std::nullopt;
  auto it = entries_.find(bucket);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void TuningDb::record(const std::vector<DbEntry>& entries, const std::optional<Ceilings>& ceilings,
                      const std::optional<DbRepro>& repro) {
  std::error_code ec;
  fs::create_directories(path_.parent_path(), ec);
  if (ec) throw IoError(fmt::format("cannot create {}: {}", path_.parent_path().string(), ec.message()), ec.value());
  FileLock lock(lock_path(path_));
  Read r = read_db(path_, identity_);
  std::map<std::string, DbEntry> merged;
  std::optional<Ceilings> merged_ceilings = ceilings;
  std::optional<DbRepro> merged_repro = repro;
  if (r.status == DbStatus::ok) {
    merged = std::move(r.db->entries);
    if (!merged_ceilings) merged_ceilings = r.db->ceilings;
    if (!merged_repro) merged_repro = r.db->repro;
  } else if (r.status != DbStatus::missing) {
    // Corrupt, or measured on other code: keep it for post-mortems, start afresh.
    const fs::path away = aside_name(path_, r.status == DbStatus::corrupt ? "corrupt" : "replaced");
    if (::rename(path_.c_str(), away.c_str()) != 0)
      throw IoError(fmt::format("cannot move {} aside: {}", path_.string(), std::strerror(errno)), errno);
    warn(fmt::format("tuning database {} {}; moved to {}", path_.string(),
                     r.status == DbStatus::corrupt ? "was corrupt (" + r.error + ")"
                                                   : "belonged to " + r.db->identity.describe(),
                     away.string()));
  }
  for (const DbEntry& e : entries) {
    auto [it, inserted] = merged.emplace(e.bucket, e);
    if (!inserted) it->second = DbEntry(faster(it->second, e));
  }
  write_file_atomic(path_, dump_db({identity_, merged, merged_ceilings, merged_repro}));
  entries_ = std::move(merged);
  ceilings_ = merged_ceilings;
  repro_ = merged_repro;
  file_identity_ = identity_;
  status_ = DbStatus::ok;
}

void TuningDb::export_to(const fs::path& file) const {
  if (status_ != DbStatus::ok)
    throw Error(fmt::format("no usable tuning database for {} at {} ({}): run plx tune first", identity_.describe(),
                            path_.string(), to_string(status_)));
  write_file_atomic(file, dump_db({identity_, entries_, ceilings_, repro_}));
}

std::size_t TuningDb::import_from(const fs::path& file, bool force) {
  DbFile f = read_db_file(file);
  if (!(f.identity == identity_) && !force)
    throw Error(fmt::format("{} was tuned on {}, not this {}; its winners would be wrong here (--force imports "
                            "it anyway)",
                            file.string(), f.identity.describe(), identity_.describe()));
  std::vector<DbEntry> entries;
  for (auto& [bucket, e] : f.entries) entries.push_back(std::move(e));
  // The GPU's own measurements stay.
  record(entries, ceilings_ ? std::nullopt : f.ceilings, repro_ ? std::nullopt : f.repro);
  return entries.size();
}

bool TuningDb::clear() {
  std::error_code ec;
  if (!fs::exists(path_, ec)) {
    entries_.clear();
    status_ = DbStatus::missing;
    return false;
  }
  FileLock lock(lock_path(path_));
  const bool removed = fs::remove(path_, ec);
  if (ec) throw IoError(fmt::format("cannot remove {}: {}", path_.string(), ec.message()), ec.value());
  entries_.clear();
  ceilings_.reset();
  repro_.reset();
  file_identity_.reset();
  status_ = DbStatus::missing;
  return removed;
}

}  // namespace plx
