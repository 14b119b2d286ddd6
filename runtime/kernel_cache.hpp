// The compile cache: cubins on disk, keyed by a SHA-256 over everything that decides the
// machine code (DESIGN.md, "Compile cache"), plus an in-process map in front of it.
//
//   <root>/v<schema>/<arch>/<key[0:2]>/<key>/{kernel.cubin, kernel.cu, manifest.json}
//   <root>/locks/<key>.lock         per-key cross-process build lock (F_OFD_SETLKW)
//   <root>/tmp/<...>/               private staging directories, renamed into place
//   <root>/quarantine/<key>-<time>/ entries found corrupt, kept for post-mortems
//
// Contract: the cache never throws at its caller for anything the disk does. A corrupt
// entry is quarantined and rebuilt (one warning line); an unwritable or full cache
// directory degrades to memory-only caching (one warning line per cache object). Only
// the caller's own `build` may throw, and that exception reaches the caller unchanged.
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/fs_atomic.hpp"
#include "runtime/compiled.hpp"

namespace plx {

// Bump when the entry layout or manifest.json changes meaning: old entries then live in
// another v<schema> directory and are never read.
inline constexpr int kCacheSchemaVersion = 1;

// Everything that decides the bytes of a cubin. Two manifests with equal fields name the
// same machine code; any difference gives a different key.
struct Manifest {
  std::string variant_name;  // self-describing variant name (for humans and explain())
  std::string source;        // the rendered translation unit
  // Every header handed to NVRTC, name -> content. A std::map: the key never depends on
  // the order in which the caller collected them.
  std::map<std::string, std::string> headers;
  std::string nvrtc_version;  // major.minor (and build where known), e.g. "13.0"
  // The caller passes the canonical option list and its order IS part of the key: NVRTC
  // options are order-sensitive (a later -D wins, include paths are searched in order), so
  // the cache never reorders them. Callers whose flags are order-free may use
  // canonical_options() to sort and dedupe them first.
  std::vector<std::string> options;
  std::string arch;               // NVRTC spelling with suffix, e.g. "sm_90a"
  std::string generator_version;  // version of the generator that rendered `source`

  // Stable, unambiguous text of all fields (length-prefixed; headers by SHA-256).
  std::string canonical() const;
  std::string key() const;  // sha256_hex(canonical())

  static std::vector<std::string> canonical_options(std::vector<std::string> options);
};

struct CacheEntryInfo {
  std::string key;
  std::string variant_name;  // empty when manifest.json is unreadable
  std::string arch;          // the <arch> directory
  std::uint64_t size_bytes = 0;    // all files of the entry
  std::int64_t created_unix = 0;   // seconds since the epoch, from manifest.json; 0 if unknown
  std::filesystem::path dir;
};

struct CacheCheck {
  std::string key;
  std::filesystem::path dir;
  bool ok = false;
  std::string reason;  // why not ok
};

struct CacheExplanation {
  enum class Status {
    memory_hit,  // this process holds it
    disk_hit,    // a valid entry exists on disk
    corrupt,     // an entry exists under the key but would be quarantined (see reason)
    miss,        // no entry: see nearest / differences
  };
  Status status = Status::miss;
  std::string key;
  std::string reason;                     // for corrupt
  std::optional<CacheEntryInfo> nearest;  // for miss, when the cache holds any entry
  // One line per differing field, "<wanted> vs <cached>" where values are short, e.g.
  // "nvrtc_version: 13.0 vs 12.8", "header plx/decode.cuh changed", "source differs",
  // "options differ: +-lineinfo" (+ only wanted, - only cached).
  std::vector<std::string> differences;
};

struct CacheStats {
  std::uint64_t memory_hits = 0;
  std::uint64_t disk_hits = 0;    // verified entries read from disk
  std::uint64_t builds = 0;       // calls of `build` that returned
  std::uint64_t quarantines = 0;  // entries actually moved to quarantine/
};

struct CacheClearResult {
  std::size_t entries = 0;
  std::uint64_t bytes = 0;
};

class KernelCache {
 public:
  explicit KernelCache(std::filesystem::path root);

  // PLX_CACHE_DIR if set, else $XDG_CACHE_HOME/parallax-jit, else ~/.cache/parallax-jit.
  static std::filesystem::path default_root();

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path entry_dir(const Manifest& m) const;

  // Memory hit, else verified disk hit, else build under the per-key lock and publish.
  // Each key is built at most once per process (concurrent callers wait for the first)
  // and, while the disk is usable, once across processes. The in-memory map is not
  // bounded (one entry per distinct kernel this process used). An empty cubin from
  // `build` is returned but never cached.
  CompiledKernel get_or_build(const Manifest& m, const std::function<CompiledKernel()>& build);

  // Memory or verified disk entry, never builds. A corrupt entry is quarantined.
  std::optional<CompiledKernel> load(const Manifest& m);

  // Moves the entry away (e.g. the driver refused its cubin) and forgets the in-memory
  // copy, so the next get_or_build rebuilds. Unknown keys are ignored.
  void quarantine(const std::string& key, const std::string& reason);

  // ---- care commands for the CLI: data only, no printing ----
  // Entries of the current schema, sorted by variant name then key.
  std::vector<CacheEntryInfo> list() const;
  // Full check of every entry: manifest.json parses and its fields hash to the key, the
  // cubin matches its size and SHA-256, kernel.cu matches the source. (Loading checks all
  // but kernel.cu, which only humans read.) quarantine_bad moves the bad ones away.
  std::vector<CacheCheck> verify(bool quarantine_bad = false);
  // Removes the entries of every schema, the quarantine and the lock files, and forgets
  // the in-memory copies. Each top directory is renamed away before it is deleted, so no
  // reader ever sees a half-deleted entry. Throws CacheError when it cannot.
  CacheClearResult clear();
  // Why `wanted` would miss: the status, and for a miss the nearest entry (same variant
  // name first, then most equal fields, then newest) with the differing fields. Read-only.
  CacheExplanation explain(const Manifest& wanted) const;

  CacheStats stats() const;
  bool memory_only() const { return memory_only_.load(); }  // degraded after an I/O error

  // Where warnings go (default: one write() to stderr). Each call is one line, no '\n'.
  void set_warning_sink(std::function<void(const std::string&)> sink);
  // Called at publish stages "staged" (temp dir created), "written" (files fsynced),
  // "before_rename", "renamed", so tests can kill a writer at each point.
  void set_publish_hook_for_testing(std::function<void(std::string_view stage)> hook);

 private:
  struct Counters {
    std::atomic<std::uint64_t> memory_hits{0}, disk_hits{0}, builds{0}, quarantines{0};
  };

  std::optional<CompiledKernel> memory_hit(const std::string& key);  // counts the hit
  void memory_put(const std::string& key, const CompiledKernel& k);
  std::shared_ptr<std::mutex> key_mutex(const std::string& key);
  std::optional<CompiledKernel> load_disk(const Manifest& m, const std::string& key,
                                          bool may_quarantine, bool* was_bad = nullptr);
  std::optional<FileLock> lock_key(const std::string& key);
  void publish(const Manifest& m, const std::string& key, const CompiledKernel& k);
  void stage(const std::filesystem::path& tmp, const Manifest& m, const std::string& key,
             const CompiledKernel& k);
  void quarantine_dir(const std::filesystem::path& dir, const std::string& key,
                      const std::string& reason);
  void quarantine_if_still_bad(const std::filesystem::path& dir, const std::string& key,
                               const std::string& reason);
  void degrade(const std::string& what);
  void warn(const std::string& line) const;
  void hook(std::string_view stage) const;
  void sweep_stale_tmp();

  std::filesystem::path root_;
  mutable std::mutex mu_;  // guards memory_, key_mutexes_, sink_, hook_
  std::unordered_map<std::string, CompiledKernel> memory_;
  std::unordered_map<std::string, std::shared_ptr<std::mutex>> key_mutexes_;
  std::function<void(const std::string&)> sink_;
  std::function<void(std::string_view)> hook_;
  std::atomic<bool> memory_only_{false};
  std::once_flag swept_tmp_;
  Counters counters_;
};

}  // namespace plx
