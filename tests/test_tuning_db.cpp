// The tuning database (autotune/tuning_db.hpp), the bucket keys (autotune/bucket_key.hpp)
// and the engine's choice between a tuned winner and the model (autotune/choose_variant.hpp).
// CPU only: identities are built by hand, the engine's choice is tested through its pure
// helper.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "autotune/bucket_key.hpp"
#include "autotune/choose_variant.hpp"
#include "autotune/db_compare.hpp"
#include "autotune/sync_tune.hpp"
#include "autotune/tuning_db.hpp"
#include "h200_identity.hpp"
#include "common/fs_atomic.hpp"
#include "generator/legality.hpp"
#include "runtime/launch.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace plx;
using plx::testing::TempDir;
using plx::testing::h200;

namespace {

DbEntry entry(const std::string& bucket, const std::string& winner, double us) {
  DbEntry e;
  e.bucket = bucket;
  e.winner = winner;
  e.winner_us = us;
  e.runner_up = winner + "_ru";
  e.runner_up_us = us * 1.1;
  e.predicted_us = us * 0.9;
  e.measured_at = 1767225600;
  e.notes = "test";
  return e;
}

// A quiet database whose warnings land in `warnings`.
TuningDb open_db(const fs::path& root, const GpuIdentity& id, std::vector<std::string>* warnings = nullptr) {
  TuningDb db(root, id);
  db.set_warning_sink([warnings](const std::string& w) {
    if (warnings) warnings->push_back(w);
  });
  return db;
}

std::vector<fs::path> files_with(const fs::path& dir, const std::string& part) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(part) != std::string::npos) out.push_back(it->path());
  return out;
}

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

AttentionArgs decode_args(int batch, int kv_len, int heads_q, int heads_kv, int q_len = 1) {
  AttentionArgs a;
  a.batch = batch;
  a.q_len = q_len;
  a.kv_len = kv_len;
  a.heads_q = heads_q;
  a.heads_kv = heads_kv;
  a.head_dim = 128;
  return a;
}

}  // namespace

TEST_CASE("bucket keys: powers of two rounded up, GQA and q_len exact", "[tuning_db]") {
  CHECK(tune::pow2_ceil(0) == 1);
  CHECK(tune::pow2_ceil(1) == 1);
  CHECK(tune::pow2_ceil(3) == 4);
  CHECK(tune::pow2_ceil(1000) == 1024);
  CHECK(tune::pow2_ceil(1024) == 1024);
  CHECK(tune::pow2_ceil(1025) == 2048);
  CHECK(tune::pow2_ceil(5000) == 8192);

  // The worked examples of bucket_key.hpp.
  CHECK(tune::bucket_key(decode_args(4, 5000, 32, 8)) == "decode_parallax_bf16_d128_causal_bh32_kv8192_g4_q1");
  AttentionArgs p = decode_args(1, 3000, 32, 8, 3000);
  CHECK(tune::bucket_key(p) == "prefill_parallax_bf16_d128_causal_bh8_kv4096_g4_q4096");
  p.window_left = 256;
  CHECK(tune::bucket_key(p) == "prefill_parallax_bf16_d128_causal_window_bh8_kv4096_g4_q4096");

  // Same bucket: kv 5000 and 8192 round to 8192; batch x heads_kv 24 and 32 to 32.
  CHECK(tune::bucket_key(decode_args(3, 5000, 32, 8)) == tune::bucket_key(decode_args(4, 8192, 32, 8)));
  CHECK(tune::bucket_of(decode_args(3, 5000, 32, 8)) == tune::bucket_of(decode_args(4, 8192, 32, 8)));
  CHECK(tune::BucketIdHash{}(tune::bucket_of(decode_args(3, 5000, 32, 8))) ==
        tune::BucketIdHash{}(tune::bucket_of(decode_args(4, 8192, 32, 8))));
  // Different buckets: one key past a power of two, another GQA group, another q_len,
  // another dtype or mask.
  CHECK(tune::bucket_key(decode_args(4, 8193, 32, 8)) != tune::bucket_key(decode_args(4, 8192, 32, 8)));
  CHECK(tune::bucket_key(decode_args(4, 8192, 64, 8)) != tune::bucket_key(decode_args(4, 8192, 32, 8)));
  CHECK(tune::bucket_of(decode_args(4, 8192, 64, 8)).group == 8);
  CHECK(tune::bucket_key(decode_args(4, 8192, 32, 8, 2)) != tune::bucket_key(decode_args(4, 8192, 32, 8, 1)));
  AttentionArgs fp16 = decode_args(4, 8192, 32, 8);
  fp16.dtype = DType::fp16;
  CHECK(tune::bucket_key(fp16) != tune::bucket_key(decode_args(4, 8192, 32, 8)));
  AttentionArgs full = decode_args(4, 8192, 32, 8);
  full.causal = false;
  CHECK(tune::bucket_key(full).find("_full_") != std::string::npos);
  // A paged cache is its own bucket per page size; the contiguous key is unchanged.
  AttentionArgs paged = decode_args(4, 8192, 32, 8);
  paged.block_table = reinterpret_cast<const int*>(std::uintptr_t{256});
  paged.page_size = 16;
  paged.max_pages = 512;
  CHECK(tune::bucket_key(paged) == "decode_parallax_bf16_d128_causal_bh32_kv8192_g4_q1_page16");
  CHECK(!(tune::bucket_of(paged) == tune::bucket_of(decode_args(4, 8192, 32, 8))));
  CHECK(tune::BucketIdHash{}(tune::bucket_of(paged)) != tune::BucketIdHash{}(tune::bucket_of(decode_args(4, 8192, 32, 8))));
  paged.page_size = 64;
  paged.max_pages = 128;
  CHECK(tune::bucket_key(paged) == "decode_parallax_bf16_d128_causal_bh32_kv8192_g4_q1_page64");
}

TEST_CASE("tuning db: identity key is filename-safe and names the hardware", "[tuning_db]") {
  GpuIdentity id = h200();
  CHECK(id.key() == "NVIDIA_H200-sm90-132sm");
  id.name = "A/B:C *x";
  CHECK(id.key() == "A_B_C__x-sm90-132sm");
  CHECK(template_hash().size() == 64);
  CHECK(h200().describe().find("NVIDIA H200 (sm 9.0, 132 SMs, driver 13000") == 0);
}

TEST_CASE("tuning db: missing file, record, round trip", "[tuning_db]") {
  TempDir t;
  TuningDb db = open_db(t.path, h200());
  CHECK(db.path() == t.path / "tuning" / "v1" / "NVIDIA_H200-sm90-132sm.json");
  CHECK(db.load() == DbStatus::missing);
  CHECK(!db.lookup("x"));
  db.record({entry("b1", "v1", 10.0), entry("b2", "v2", 20.0)});
  CHECK(db.lookup("b1")->winner == "v1");

  TuningDb again = open_db(t.path, h200());
  CHECK(again.load() == DbStatus::ok);
  REQUIRE(again.entries().size() == 2);
  CHECK(*again.lookup("b1") == entry("b1", "v1", 10.0));
  CHECK(*again.lookup("b2") == entry("b2", "v2", 20.0));
  CHECK(again.file_identity() == h200());
  // No runner-up survives as such.
  DbEntry lone = entry("b3", "v3", 5.0);
  lone.runner_up.clear();
  lone.runner_up_us = 0;
  again.record({lone});
  TuningDb third = open_db(t.path, h200());
  third.load();
  CHECK(*third.lookup("b3") == lone);

  CHECK(third.clear());
  CHECK(third.load() == DbStatus::missing);
  CHECK(!third.clear());
}

TEST_CASE("tuning db: merge keeps both buckets and the faster winner", "[tuning_db]") {
  TempDir t;
  TuningDb a = open_db(t.path, h200());
  TuningDb b = open_db(t.path, h200());
  a.record({entry("b1", "slow", 12.0)});
  b.record({entry("b2", "other", 7.0)});  // b never loaded: the merge re-reads the file
  CHECK(b.entries().size() == 2);
  a.record({entry("b1", "fast", 8.0)});
  a.record({entry("b1", "slower", 9.0)});
  TuningDb c = open_db(t.path, h200());
  c.load();
  CHECK(c.entries().size() == 2);
  CHECK(c.lookup("b1")->winner == "fast");
  CHECK(c.lookup("b2")->winner == "other");
  // Within one record() too; and an unmeasured (0 us) winner never beats a measured one.
  c.record({entry("b4", "x", 3.0), entry("b4", "y", 2.0), entry("b2", "unmeasured", 0.0)});
  CHECK(c.lookup("b4")->winner == "y");
  CHECK(c.lookup("b2")->winner == "other");
  CHECK(faster(entry("z", "a", 1.0), entry("z", "b", 1.0)).winner == "a");  // ties: incumbent
}

TEST_CASE("tuning db: concurrent writers in separate processes lose nothing", "[tuning_db]") {
  TempDir t;
  constexpr int kProcs = 6, kRounds = 4, kPerRound = 3;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        for (int r = 0; r < kRounds; ++r) {
          TuningDb db = open_db(t.path, h200());  // a fresh view each time, like separate tuners
          std::vector<DbEntry> es;
          for (int i = 0; i < kPerRound; ++i)
            es.push_back(entry("p" + std::to_string(p) + "_r" + std::to_string(r) + "_" + std::to_string(i),
                               "v", 1.0 + i));
          es.push_back(entry("shared", "v" + std::to_string(p), 10.0 + p));  // everyone tunes this one
          db.record(es);
        }
      } catch (...) {
        rc = 1;
      }
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  TuningDb db = open_db(t.path, h200());
  REQUIRE(db.load() == DbStatus::ok);
  CHECK(db.entries().size() == std::size_t(kProcs * kRounds * kPerRound + 1));
  CHECK(db.lookup("shared")->winner == "v0");  // the fastest of all writers
  CHECK(files_with(db.path().parent_path(), "corrupt").empty());
}

TEST_CASE("tuning db: a corrupt file is set aside, never a crash", "[tuning_db]") {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"truncated", std::string(R"({"schema": "parallax-jit tuning database", "version": 1, "identity": {"na)")},
      {"garbage", std::string("\x00\xff\xfe not json at all", 22)},
      {"empty", ""},
      {"wrong schema", R"({"schema": "something else", "version": 1, "identity": {}, "entries": {}})"},
      {"wrong version", R"({"schema": "parallax-jit tuning database", "version": 7, "identity": {}, "entries": {}})"},
      {"not an object", "[1, 2, 3]"},
  };
  for (const auto& [what, bytes] : cases) {
    SECTION(what) {
      TempDir t;
      std::vector<std::string> warnings;
      TuningDb db = open_db(t.path, h200(), &warnings);
      write(db.path(), bytes);
      CHECK(db.load() == DbStatus::corrupt);
      CHECK(db.entries().empty());
      CHECK(!db.lookup("b1"));
      REQUIRE(warnings.size() == 1);
      CHECK(warnings[0].find("corrupt") != std::string::npos);
      CHECK(warnings[0].find('\n') == std::string::npos);
      CHECK(!fs::exists(db.path()));
      const auto aside = files_with(db.path().parent_path(), ".json.corrupt-");
      REQUIRE(aside.size() == 1);
      CHECK(read_file(aside[0]) == bytes);  // kept for post-mortems
      // And tuning carries on from empty.
      db.record({entry("b1", "v1", 1.0)});
      TuningDb again = open_db(t.path, h200());
      CHECK(again.load() == DbStatus::ok);
      CHECK(again.entries().size() == 1);
    }
  }
  SECTION("wrong types inside a well-formed file") {
    TempDir t;
    TuningDb db = open_db(t.path, h200());
    db.record({entry("b1", "v1", 1.0)});
    const std::string before = *read_file(db.path());
    const std::string text =
        std::regex_replace(before, std::regex(R"("winner_us": [0-9.eE+-]+)"), R"("winner_us": "fast")");
    REQUIRE(text != before);
    write(db.path(), text);
    std::vector<std::string> warnings;
    TuningDb again = open_db(t.path, h200(), &warnings);
    CHECK(again.load() == DbStatus::corrupt);
    REQUIRE(warnings.size() == 1);
    INFO(warnings[0]);
    CHECK(warnings[0].find("winner_us") != std::string::npos);
  }
  SECTION("record() over a corrupt file sets it aside too") {
    TempDir t;
    TuningDb db = open_db(t.path, h200());
    write(db.path(), "{");
    db.record({entry("b1", "v1", 1.0)});
    CHECK(files_with(db.path().parent_path(), ".json.corrupt-").size() == 1);
    TuningDb again = open_db(t.path, h200());
    CHECK(again.load() == DbStatus::ok);
  }
}

TEST_CASE("tuning db: another driver or template set is never used", "[tuning_db]") {
  TempDir t;
  TuningDb old = open_db(t.path, h200());
  old.record({entry("b1", "v1", 1.0)});

  for (int which = 0; which < 4; ++which) {
    GpuIdentity now = h200();
    if (which == 0) now.driver_version = 13010;
    if (which == 1) now.template_hash = std::string(64, '0');
    if (which == 2) now.nvrtc_version = "13.1";
    if (which == 3) now.project_version = "9.9.9";
    REQUIRE(now.key() == h200().key());  // the same file
    TuningDb db = open_db(t.path, now);
    CHECK(db.load() == DbStatus::identity_mismatch);
    CHECK(!db.lookup("b1"));
    CHECK(db.entries().empty());
    REQUIRE(db.file_identity());
    CHECK(*db.file_identity() == h200());
    CHECK_THROWS_AS(db.export_to(t.path / "out.json"), Error);
  }
  // A tune under the new identity replaces it, keeping the old one aside.
  GpuIdentity now = h200();
  now.driver_version = 13010;
  TuningDb db = open_db(t.path, now);
  db.record({entry("b2", "v2", 2.0)});
  CHECK(files_with(db.path().parent_path(), ".json.replaced-").size() == 1);
  TuningDb fresh = open_db(t.path, now);
  CHECK(fresh.load() == DbStatus::ok);
  CHECK(!fresh.lookup("b1"));
  CHECK(fresh.lookup("b2"));
}

TEST_CASE("tuning db: export and import between machines", "[tuning_db]") {
  TempDir here, there;
  TuningDb src = open_db(here.path, h200());
  src.record({entry("b1", "v1", 1.0), entry("b2", "v2", 2.0)});
  const fs::path file = here.path / "h200.json";
  src.export_to(file);

  TuningDb dst = open_db(there.path, h200());
  dst.record({entry("b2", "v2-faster", 1.5), entry("b3", "v3", 3.0)});
  CHECK(dst.import_from(file) == 2);
  TuningDb check = open_db(there.path, h200());
  REQUIRE(check.load() == DbStatus::ok);
  CHECK(check.entries().size() == 3);
  CHECK(check.lookup("b1")->winner == "v1");
  CHECK(check.lookup("b2")->winner == "v2-faster");  // import merges like record

  // Another GPU's (or driver's) file is refused, naming both, unless forced.
  GpuIdentity h100 = h200();
  h100.name = "NVIDIA H100 80GB HBM3";
  TuningDb other = open_db(there.path, h100);
  try {
    other.import_from(file);
    FAIL("import of another identity succeeded");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("NVIDIA H200") != std::string::npos);
    CHECK(msg.find("H100") != std::string::npos);
    CHECK(msg.find("--force") != std::string::npos);
  }
  CHECK(other.load() == DbStatus::missing);
  CHECK(other.import_from(file, /*force=*/true) == 2);
  CHECK(other.lookup("b1"));

  // Not a database, or missing: one-line errors, nothing written.
  write(here.path / "junk.json", "{\"a\": 1}");
  CHECK_THROWS_WITH(dst.import_from(here.path / "junk.json"), Catch::Contains("is not a tuning database"));
  CHECK_THROWS_WITH(dst.import_from(here.path / "nope.json"), Catch::Contains("cannot read"));
  TuningDb empty = open_db(here.path / "empty", h200());
  empty.load();
  CHECK_THROWS_WITH(empty.export_to(here.path / "x.json"), Catch::Contains("run plx tune first"));
}

TEST_CASE("choose_variant: the database's winner when usable, else the model", "[tuning_db]") {
  TempDir t;
  const AttentionArgs a = decode_args(4, 5000, 32, 8);
  const Variant model = default_variant(a, Arch::sm90a);
  Variant tuned = model;
  tuned.tile.stages = model.tile.stages == 2 ? 3 : 2;
  REQUIRE(!why_illegal(tuned));
  REQUIRE(tuned.name() != model.name());

  TuningDb db = open_db(t.path, h200());
  db.load();
  CHECK(choose_variant(db, a, Arch::sm90a).variant == model);  // nothing tuned
  CHECK(!choose_variant(db, a, Arch::sm90a).tuned);

  db.record({entry(tune::bucket_key(a), tuned.name(), 10.0)});
  VariantChoice c = choose_variant(db, a, Arch::sm90a);
  CHECK(c.tuned);
  CHECK(c.variant == tuned);
  // Every call in the bucket gets it; a call outside the bucket gets the model's choice.
  CHECK(choose_variant(db, decode_args(3, 8000, 32, 8), Arch::sm90a).variant == tuned);
  CHECK(choose_variant(db, decode_args(4, 9000, 32, 8), Arch::sm90a).variant ==
        default_variant(decode_args(4, 9000, 32, 8), Arch::sm90a));

  // Unusable winners fall back to the model, saying why.
  auto with_winner = [&](const std::string& name) {
    TempDir d;
    TuningDb x = open_db(d.path, h200());
    x.record({entry(tune::bucket_key(a), name, 10.0)});
    return choose_variant(x, a, Arch::sm90a);
  };
  c = with_winner("not_a_variant");
  CHECK(!c.tuned);
  CHECK(c.variant == model);
  CHECK(c.rejected.find("not a variant name") != std::string::npos);
  Variant d64 = tuned;
  d64.head_dim = 64;
  c = with_winner(d64.name());
  CHECK(!c.tuned);
  CHECK(c.rejected.find("head_dim") != std::string::npos);
  Variant sm80 = tuned;
  sm80.arch = Arch::sm80;
  c = with_winner(sm80.name());
  CHECK(!c.tuned);
  CHECK(c.variant == model);
  Variant prefill = default_variant(decode_args(1, 4096, 32, 8, 4096), Arch::sm90a);
  c = with_winner(prefill.name());
  CHECK(!c.tuned);
  CHECK(c.rejected.find("prefill") != std::string::npos);

  // A database of another identity is never consulted.
  GpuIdentity upgraded = h200();
  upgraded.driver_version += 10;
  TuningDb stale = open_db(t.path, upgraded);
  CHECK(stale.load() == DbStatus::identity_mismatch);
  CHECK(choose_variant(stale, a, Arch::sm90a).variant == model);
}

TEST_CASE("tuning db: the GPU's ceilings are stored once and kept across merges", "[tuning_db][ceilings]") {
  TempDir t;
  Ceilings c;
  c.copy_GBps = 4213.5;
  c.tc_tflops = 655.25;
  c.mma_sync_tflops = 470.5;
  c.wgmma_tflops = 655.25;
  c.tc_kernel = "wgmma m64n128k16 bf16 (smem operands)";
  c.measured_at = 1767225600;
  {
    TuningDb db = open_db(t.path, h200());
    db.load();
    CHECK(!db.ceilings());
    db.record({}, c);  // the first tune measures them before any winner exists
    CHECK(db.ceilings() == c);
  }
  TuningDb db = open_db(t.path, h200());
  CHECK(db.load() == DbStatus::ok);
  REQUIRE(db.ceilings());
  CHECK(*db.ceilings() == c);
  CHECK(db.entries().empty());
  // Winners recorded later (by this or another tuner) leave the ceilings alone.
  DbEntry e = entry("b1", "v1", 10.0);
  e.noise_us = 0.125;
  TuningDb other = open_db(t.path, h200());
  other.record({e});
  TuningDb again = open_db(t.path, h200());
  again.load();
  CHECK(again.ceilings() == c);
  CHECK(again.lookup("b1")->noise_us == 0.125);
  // Export carries them; a file without them (written before ceilings existed) parses.
  const fs::path x = t.path / "x.json";
  again.export_to(x);
  const DbFile f = parse_db(*read_file(x));
  CHECK(f.ceilings == c);
  DbFile old = f;
  old.ceilings.reset();
  old.entries.begin()->second.noise_us = 0;
  const std::string old_text = dump_db(old);
  CHECK(old_text.find("ceilings") == std::string::npos);
  CHECK(old_text.find("noise_us") == std::string::npos);
  CHECK(!parse_db(old_text).ceilings);
  // Ceilings with a zero rate are corrupt, not silently used.
  std::string bad = dump_db(f);
  const auto pos = bad.find("\"tc_tflops\": 655.25");
  REQUIRE(pos != std::string::npos);
  bad.replace(pos, std::string("\"tc_tflops\": 655.25").size(), "\"tc_tflops\": 0");
  CHECK_THROWS_WITH(parse_db(bad), Catch::Contains("ceilings"));
}

// ---- plx db compare: do two tunes agree? ------------------------------------------------

namespace {

// A database of one run: (bucket, winner, us, noise, runner-up) rows.
struct Row {
  const char* bucket;
  const char* winner;
  double us, noise;
  const char* runner_up = "";
};
DbFile run_db(const std::vector<Row>& rows) {
  DbFile f;
  f.identity = h200();
  for (const Row& r : rows) {
    DbEntry e = entry(r.bucket, r.winner, r.us);
    e.noise_us = r.noise;
    e.runner_up = r.runner_up;
    e.runner_up_us = *r.runner_up ? r.us * 1.005 : 0;
    f.entries[r.bucket] = e;
  }
  return f;
}

}  // namespace

TEST_CASE("db compare: identical runs agree bucket for bucket", "[tuning_db][compare]") {
  const DbFile a = run_db({{"b1", "v1", 10.0, 0.1}, {"b2", "v2", 20.0, 0.2}, {"b3", "v3", 30.0, 0.3}});
  const DbComparison c = compare_dbs(a, a);
  REQUIRE(c.both.size() == 3);
  CHECK(c.same == 3);
  CHECK(c.tied == 0);
  CHECK(c.disagree == 0);
  CHECK(c.same_beyond_noise == 0);
  CHECK(c.only_a.empty());
  CHECK(c.only_b.empty());
  CHECK(c.all_agree());
  CHECK(c.summary() == "agree 3/3 buckets (same winner 3, tied 0), disagree 0");
  for (const BucketComparison& x : c.both) {
    CHECK(x.verdict == Agreement::same_winner);
    CHECK(x.diff_us == 0);
  }
  // Nothing to compare is not agreement.
  CHECK(!compare_dbs(DbFile{}, DbFile{}).all_agree());
}

TEST_CASE("db compare: other winners within the recorded noise are tied, beyond it disagree",
          "[tuning_db][compare]") {
  // b1: another winner 0.8% slower, noise 1% -> tied. b2: 0.8% slower but a recorded
  // noise of 0.5% on both sides -> the floor (1% of the faster) still ties it. b3: 5%
  // apart with 1% noise -> disagree. b4: 3% apart, but run B measured 4% noise -> tied
  // (the larger noise counts). b5: the same winner 6% slower -> same, flagged. b6: each
  // won as the other's runner-up, 0.3% apart -> tied and swapped.
  const DbFile a = run_db({{"b1", "x", 10.0, 0.1},
                           {"b2", "x", 10.0, 0.05},
                           {"b3", "x", 10.0, 0.1},
                           {"b4", "x", 10.0, 0.1},
                           {"b5", "x", 10.0, 0.1},
                           {"b6", "x", 10.0, 0.1, "y"}});
  const DbFile b = run_db({{"b1", "y", 10.08, 0.1},
                           {"b2", "y", 10.08, 0.05},
                           {"b3", "y", 10.5, 0.1},
                           {"b4", "y", 10.3, 0.4},
                           {"b5", "x", 10.6, 0.1},
                           {"b6", "y", 10.03, 0.1, "x"}});
  const DbComparison c = compare_dbs(a, b);
  REQUIRE(c.both.size() == 6);
  std::map<std::string, const BucketComparison*> by;
  for (const BucketComparison& x : c.both) by[x.bucket] = &x;
  CHECK(by["b1"]->verdict == Agreement::tied);
  CHECK(by["b2"]->verdict == Agreement::tied);
  CHECK(by["b2"]->noise_us == Approx(0.1));
  CHECK(by["b3"]->verdict == Agreement::disagree);
  CHECK(by["b3"]->diff_us == Approx(0.5));
  CHECK(by["b3"]->beyond_noise);
  CHECK(by["b4"]->verdict == Agreement::tied);
  CHECK(by["b4"]->noise_us == Approx(0.4));
  CHECK(by["b5"]->verdict == Agreement::same_winner);
  CHECK(by["b5"]->beyond_noise);
  CHECK(by["b6"]->verdict == Agreement::tied);
  CHECK(by["b6"]->swapped);
  CHECK(!by["b1"]->swapped);
  CHECK(c.same == 1);
  CHECK(c.tied == 4);
  CHECK(c.disagree == 1);
  CHECK(c.same_beyond_noise == 1);
  CHECK(!c.all_agree());
  CHECK(c.summary() == "agree 5/6 buckets (same winner 1, tied 4), disagree 1");
  // The verdict does not depend on which run is A.
  const DbComparison r = compare_dbs(b, a);
  for (std::size_t i = 0; i < r.both.size(); ++i) {
    CHECK(r.both[i].verdict == c.both[i].verdict);
    CHECK(r.both[i].diff_us == Approx(-c.both[i].diff_us));
  }
}

TEST_CASE("db compare: buckets in one file only are listed apart and fail the check", "[tuning_db][compare]") {
  const DbFile a = run_db({{"b1", "x", 10.0, 0.1}, {"b2", "x", 10.0, 0.1}, {"only_a", "x", 5.0, 0.1}});
  const DbFile b = run_db({{"b1", "x", 10.0, 0.1}, {"b2", "x", 10.0, 0.1}, {"only_b1", "x", 5.0, 0.1},
                           {"only_b2", "x", 5.0, 0.1}});
  const DbComparison c = compare_dbs(a, b);
  CHECK(c.both.size() == 2);
  CHECK(c.same == 2);
  CHECK(c.only_a == std::vector<std::string>{"only_a"});
  CHECK(c.only_b == std::vector<std::string>{"only_b1", "only_b2"});
  CHECK(!c.all_agree());  // agreeing where both have a winner is not the whole answer
  CHECK(c.summary() == "agree 2/2 buckets (same winner 2, tied 0), disagree 0");
  const json::Value j = to_json(c);
  CHECK(j.at("only_a").size() == 1);
  CHECK(j.at("only_b").size() == 2);
  CHECK(j.at("all_agree").as_bool() == false);
  CHECK(j.at("buckets").size() == 2);
  CHECK(j.at("buckets").as_array()[0].at("verdict").as_string() == "same");
  CHECK(j.at("buckets").as_array()[0].at("runner_up_a").is_null());
}

TEST_CASE("db compare: files that are not databases are named in one clear error", "[tuning_db][compare]") {
  TempDir t;
  const fs::path good = t.path / "good.json";
  write(good, dump_db(run_db({{"b1", "x", 10.0, 0.1}})));
  CHECK(read_db_file(good).entries.size() == 1);
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"truncated.json", dump_db(run_db({{"b1", "x", 10.0, 0.1}})).substr(0, 60)},
           {"garbage.json", std::string("\x00\xff not json", 11)},
           {"other.json", R"({"schema": "parallax-jit tune report", "version": 1})"},
           {"bad_entry.json", std::regex_replace(dump_db(run_db({{"b1", "x", 10.0, 0.1}})),
                                                 std::regex(R"("winner_us": [0-9.]+)"), R"("winner_us": -1)")}}) {
    INFO(name);
    write(t.path / name, bytes);
    try {
      (void)read_db_file(t.path / name);
      FAIL("no error");
    } catch (const Error& e) {
      const std::string what = e.what();
      CHECK(what.find((t.path / name).string() + " is not a tuning database: ") == 0);
      CHECK(what.find('\n') == std::string::npos);
    }
  }
  CHECK_THROWS_WITH(read_db_file(t.path / "missing.json"), Catch::StartsWith("cannot read"));
  CHECK_THROWS_WITH(read_db_file(t.path), Catch::StartsWith("cannot read"));  // a directory
}

// ---- plx tune --repeat: reproducibility in the database and in the comparison ------------

TEST_CASE("tuning db: repeat_us and repro_rel round trip, merge and export", "[tuning_db][repro]") {
  DbFile f = run_db({{"b1", "x", 10.0, 0.1}, {"b2", "y", 20.0, 0.2}});
  f.entries["b1"].repeat_us = 10.3;
  f.repro = DbRepro{0.04, 0.015, 2};
  const std::string text = dump_db(f);
  CHECK(text.find("\"repro_rel\": 0.04") != std::string::npos);
  CHECK(text.find("\"repeat_us\": 10.3") != std::string::npos);
  const DbFile back = parse_db(text);
  REQUIRE(back.repro);
  CHECK(*back.repro == DbRepro{0.04, 0.015, 2});
  CHECK(back.entries.at("b1").repeat_us == 10.3);
  CHECK(back.entries.at("b2").repeat_us == 0);  // not repeated: no key written, 0 read
  CHECK(back.entries == f.entries);

  // Through the database: record stores it, a record without one keeps it, a new one
  // replaces it; export carries it; an import never overrides this GPU's own.
  TempDir t;
  TuningDb db = open_db(t.path, h200());
  db.record({f.entries["b1"]}, std::nullopt, DbRepro{0.04, 0.015, 2});
  TuningDb again = open_db(t.path, h200());
  REQUIRE(again.load() == DbStatus::ok);
  REQUIRE(again.repro());
  CHECK(again.repro()->rel == 0.04);
  CHECK(again.lookup("b1")->repeat_us == 10.3);
  again.record({f.entries["b2"]});
  REQUIRE(again.repro());
  CHECK(again.repro()->rel == 0.04);
  again.record({}, std::nullopt, DbRepro{0.02, 0.01, 5});
  CHECK(again.repro()->rel == 0.02);
  const fs::path out = t.path / "export.json";
  again.export_to(out);
  REQUIRE(read_db_file(out).repro);
  CHECK(read_db_file(out).repro->buckets == 5);
  DbFile other = run_db({{"b3", "z", 5.0, 0.05}});
  other.repro = DbRepro{0.5, 0.3, 1};
  write(t.path / "other.json", dump_db(other));
  again.import_from(t.path / "other.json");
  CHECK(again.repro()->rel == 0.02);
  TempDir fresh;  // a GPU without its own takes the import's
  TuningDb empty = open_db(fresh.path, h200());
  empty.import_from(t.path / "other.json");
  REQUIRE(empty.repro());
  CHECK(empty.repro()->rel == 0.5);

  // A bad value is a bad file.
  CHECK_THROWS_WITH(parse_db(std::regex_replace(text, std::regex(R"("repro_rel": [0-9.]+)"), R"("repro_rel": -0.1)")),
                    Catch::Contains("repro_rel"));
}

TEST_CASE("tuning db: a version-1 file from before --repeat loads unchanged", "[tuning_db][repro]") {
  // As dump_db wrote it before repeat_us / repro_rel existed (written out by hand, so this
  // does not depend on today's writer).
  const std::string old = std::string(R"({
  "schema": "parallax-jit tuning database",
  "version": 1,
  "identity": {"name": "NVIDIA H200", "cc_major": 9, "cc_minor": 0, "sm_count": 132, "driver_version": 13000,
               "nvrtc_version": "13.0", "template_hash": ")") +
                          template_hash() + R"(", "project_version": ")" PLX_VERSION R"("},
  "entries": {
    "decode_parallax_bf16_d128_causal_bh8_kv8192_g4_q1": {
      "winner": "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_sm90a", "winner_us": 12.5,
      "runner_up": null, "runner_up_us": null, "predicted_us": 11.0, "noise_us": 0.125,
      "measured_at": 1767225600, "notes": "plx tune"
    }
  }
}
)";
  const DbFile f = parse_db(old);
  CHECK(!f.repro);
  REQUIRE(f.entries.size() == 1);
  const DbEntry& e = f.entries.begin()->second;
  CHECK(e.winner_us == 12.5);
  CHECK(e.noise_us == 0.125);
  CHECK(e.repeat_us == 0);
  // And the engine's database reads it as its own.
  TempDir t;
  write(TuningDb::dir(t.path) / (h200().key() + ".json"), old);
  TuningDb db = open_db(t.path, h200());
  CHECK(db.load() == DbStatus::ok);
  CHECK(!db.repro());
  CHECK(db.entries().size() == 1);
  // Written back, it has no repro fields (nothing was measured).
  const std::string again = dump_db(f);
  CHECK(again.find("repro") == std::string::npos);
  CHECK(again.find("repeat_us") == std::string::npos);
}

TEST_CASE("db compare: the reproducibility term ties what the within-run noise cannot", "[tuning_db][compare][repro]") {
  // Other winners 3% apart, 1% recorded noise on both sides: without repro_rel they
  // disagree; with repro_rel 5% in either file they are tied, and the term is named.
  const DbFile a = run_db({{"b1", "x", 10.0, 0.1}, {"b2", "x", 10.0, 0.1}, {"b3", "x", 10.0, 0.1}});
  const DbFile b = run_db({{"b1", "y", 10.3, 0.1}, {"b2", "x", 10.3, 0.1}, {"b3", "y", 10.8, 0.1}});
  const DbComparison plain = compare_dbs(a, b);
  CHECK(!plain.repro_a);
  CHECK(plain.both[0].verdict == Agreement::disagree);
  CHECK(plain.both[0].noise_us == Approx(0.1));
  CHECK(plain.both[0].noise_by == measure::NoiseTerm::floor);  // ties go to the floor: 0.1 each
  CHECK(plain.both[1].beyond_noise);
  CHECK(plain.both[2].verdict == Agreement::disagree);
  CHECK(plain.tied_by_repro == 0);
  CHECK(plain.same_within_by_repro == 0);
  for (const BucketComparison& x : plain.both) {
    CHECK(x.verdict_within_run == x.verdict);
    CHECK(x.beyond_within_run_noise == x.beyond_noise);
  }

  DbFile a5 = a;
  a5.repro = DbRepro{0.05, 0.02, 3};
  const DbComparison c = compare_dbs(a5, b);
  REQUIRE(c.both.size() == 3);
  CHECK(c.both[0].verdict == Agreement::tied);
  CHECK(c.both[0].verdict_within_run == Agreement::disagree);
  CHECK(c.both[0].noise_us == Approx(0.5));  // 5% of the faster (10)
  CHECK(c.both[0].noise_by == measure::NoiseTerm::repro_a);
  CHECK(c.both[1].verdict == Agreement::same_winner);
  CHECK(!c.both[1].beyond_noise);
  CHECK(c.both[1].beyond_within_run_noise);
  CHECK(c.both[2].verdict == Agreement::disagree);  // 8% is beyond 5% too
  CHECK(c.tied_by_repro == 1);
  CHECK(c.same_within_by_repro == 1);
  CHECK(c.same_beyond_noise == 0);
  CHECK(c.summary() == "agree 2/3 buckets (same winner 1, tied 1), disagree 1");
  // B's term counts the same way, and the larger of the two decides.
  DbFile b2 = b;
  b2.repro = DbRepro{0.09, 0.03, 3};
  const DbComparison d = compare_dbs(a5, b2);
  CHECK(d.both[2].verdict == Agreement::tied);
  CHECK(d.both[2].noise_by == measure::NoiseTerm::repro_b);
  CHECK(d.both[2].noise_us == Approx(0.9));
  const json::Value j = to_json(d);
  CHECK(j.at("repro_rel_a").as_double() == 0.05);
  CHECK(j.at("repro_rel_b").as_double() == 0.09);
  CHECK(j.at("buckets").as_array()[2].at("noise_by").as_string() == "repro_b");
  CHECK(j.at("buckets").as_array()[2].at("verdict_within_run").as_string() == "disagree");
  CHECK(to_json(plain).at("repro_rel_a").is_null());
}

TEST_CASE("PLX_TUNE=sync races both decode loaders on sm_90a, cp.async only on sm_80", "[tuning_db]") {
  AttentionArgs a = decode_args(1, 32768, 32, 8);
  for (Arch arch : {Arch::sm80, Arch::sm90a}) {
    const Variant model = default_variant(a, arch);
    const auto c = tune::sync_candidates(model, arch == Arch::sm90a ? 232448 : 166912);
    REQUIRE(!c.empty());
    CHECK(c.front() == model);
    int tma = 0;
    for (const Variant& v : c) {
      INFO(v.name());
      CHECK(!why_illegal(v));
      tma += v.tile.loader == Loader::tma;
    }
    if (arch == Arch::sm90a)
      CHECK(tma > 0);
    else
      CHECK(tma == 0);
  }
}

