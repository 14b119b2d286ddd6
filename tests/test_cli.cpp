// The `plx` executable end to end, as a user runs it: exit statuses, one-line errors,
// gen's listing and files, a dry-run tune of a two-variant spec, and the cache commands
// over the entries that tune compiled. Every run gets PLX_CACHE_DIR in a private temp dir.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "autotune/measure.hpp"
#include "autotune/tuning_db.hpp"
#include "generator/expand.hpp"
#include "generator/spec.hpp"
#include "runtime/driver.hpp"
#include "xml_check.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using plx::testing::TempDir;

namespace {

struct Run {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `plx ARGS` from the source dir (so specs/ paths resolve) with the cache in `dir`.
Run run_plx(const TempDir& dir, const std::string& args) {
  const fs::path out = dir.path / "stdout.txt", err = dir.path / "stderr.txt";
  const std::string cmd = "cd '" PLX_SOURCE_DIR "' && PLX_CACHE_DIR='" + (dir.path / "cache").string() +
                          "' '" PLX_BINARY_DIR "/plx' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  Run r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

int count_lines(const std::string& s, const std::regex& re) {
  int n = 0;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) n += std::regex_match(line, re);
  return n;
}

bool one_error_line(const Run& r) {
  return r.err.rfind("plx: ", 0) == 0 && std::count(r.err.begin(), r.err.end(), '\n') == 1;
}

constexpr const char* kSmallSpec = R"(name: small
op: decode
variant: [parallax]
dtype: [bf16]
head_dim: [64]
gqa: [4]
arch: [sm_90a]
tile:
  block_m: [8, 16]
  block_n: [64]
  warps: [4]
  stages: [2]
  split_kv: [auto]
)";

// One backward class, two tiles: the sm_90a wgmma kernel at d 64 (block_n 32 and 64 are
// both legal there).
constexpr const char* kBackwardSpec = R"(name: small-backward
op: backward
variant: [parallax]
dtype: [bf16]
head_dim: [64]
gqa: [2]
causal: [true]
window: [-1]
arch: [sm_90a]
tile:
  block_m: [128]
  block_n: [32, 64]
  warps: [12]
  stages: [4]
  split_kv: [1]
  mma: [wgmma]
)";

}  // namespace

TEST_CASE("plx --help is grouped; every command has --help; --version", "[cli]") {
  TempDir t;
  Run r = run_plx(t, "--help");
  CHECK(r.rc == 0);
  for (const char* group : {"Kernels", "Tuning:", "Compile cache:", "Environment:", "gen SPEC", "tune", "doctor"})
    CHECK(r.out.find(group) != std::string::npos);
  for (const char* group : {"bench decode|prefill", "explore SPEC", "PLX_TUNE=sync", "db compare A B"})
    CHECK(r.out.find(group) != std::string::npos);
  for (const char* cmd : {"gen", "tune", "explore", "bench", "db", "cache", "doctor"}) {
    Run h = run_plx(t, std::string(cmd) + " --help");
    CHECK(h.rc == 0);
    CHECK(h.out.rfind("Usage: plx", 0) == 0);
  }
  r = run_plx(t, "--version");
  CHECK(r.rc == 0);
  CHECK(r.out == "plx " PLX_VERSION "\n");
}

TEST_CASE("usage mistakes exit 2 with one line on stderr", "[cli]") {
  TempDir t;
  for (const char* args : {"", "frobnicate", "gen", "gen --bogus specs/decode_sm90.yaml", "gen --jobs x a.yaml",
                           "cache", "cache shred", "cache explain not_a_variant", "tune --top 0", "db", "db shred",
                           "db export", "db show extra", "db clear --force", "db compare a.json",
                           "db compare a.json b.json c.json", "db show --json x.json", "tune --budget-s 0",
                           "tune --buckets ,", "tune --arch sm_70", "tune --no-repeat --repeat-budget-s 5", "tune --repeat --no-repeat",
                           "tune --repeat --repeat-budget-s 0", "tune --repeat --repeat-budget-s x", "tune --profile b200", "tune --out a --json b",
                           "bench", "bench frobnicate", "bench decode --batch x", "bench decode --batch 1,",
                           "bench decode --head-dim 96", "bench prefill --q-len 4", "bench decode --op prefill",
                           "bench decode --variant nope", "bench decode --json --csv", "bench decode --budget-s -1",
                           "bench decode --shapes 1x2x3", "bench decode --shapes 1x4096x32x8 --batch 2",
                           "explore", "explore specs/decode_sm90.yaml --op prefill",
                           "explore specs/decode_sm90.yaml --mask sideways",
                           "explore specs/decode_sm90.yaml --budget-s fast"}) {
    INFO(args);
    const Run r = run_plx(t, args);
    CHECK(r.rc == 2);
    CHECK(one_error_line(r));
  }
}

TEST_CASE("plx gen lists every variant and every dropped combination", "[cli]") {
  TempDir t;
  const plx::ExpandResult ex = plx::expand(plx::load_spec(PLX_SOURCE_DIR "/specs/decode_sm90.yaml"));
  const Run r = run_plx(t, "gen specs/decode_sm90.yaml");
  REQUIRE(r.rc == 0);
  CHECK(count_lines(r.out, std::regex("plx_decode_[\\w-]+_sm90a")) == int(ex.variants.size()));
  CHECK(count_lines(r.out, std::regex("dropped plx_[\\w-]+: .+")) == int(ex.dropped.size()));
  CHECK(ex.variants.size() == 120);  // the spec's own comment: 120 compile, 24 dropped
  CHECK(ex.dropped.size() == 24);
  CHECK(r.out.find("decode-sm90 (specs/decode_sm90.yaml): 120 variants, 24 dropped\n") != std::string::npos);
}

TEST_CASE("plx gen on a bad spec names file:line:col and exits 1", "[cli]") {
  TempDir t;
  const fs::path bad = t.path / "bad.yaml";
  plx::write_file_atomic(bad, "op: decode\nvariant: [parallax]\ndtype: [bf16]\nhead_dim: [0]\narch: [sm_90a]\n");
  const Run r = run_plx(t, "gen '" + bad.string() + "'");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(std::regex_search(r.err, std::regex("bad\\.yaml:4:\\d+: .*head_dim")));
  CHECK(r.out.empty());

  const Run missing = run_plx(t, "gen '" + (t.path / "nope.yaml").string() + "'");
  CHECK(missing.rc == 1);
  CHECK(one_error_line(missing));
}

TEST_CASE("plx gen on a spec whose every combination is dropped says so and exits 1", "[cli]") {
  TempDir t;
  const fs::path spec = t.path / "tma80.yaml";
  // The TMA decode loader is sm_90a only: with arch sm_80 nothing is legal.
  std::string text = slurp(fs::path(PLX_SOURCE_DIR) / "specs/decode_sm90_tma.yaml");
  text = std::regex_replace(text, std::regex("arch: \\[sm_90a\\]"), "arch: [sm_80]");
  REQUIRE(text.find("arch: [sm_80]") != std::string::npos);
  plx::write_file_atomic(spec, text);
  const Run r = run_plx(t, "gen '" + spec.string() + "'");
  CHECK(r.rc == 1);
  CHECK(r.out.find(": 0 variants, ") != std::string::npos);
  CHECK(r.err.find("every one of its") != std::string::npos);
  CHECK(r.err.find("describes no kernel; the first: plx_decode_") != std::string::npos);
  // A spec with variants next to it is still listed, and the exit status still says 1.
  const Run both = run_plx(t, "gen specs/decode_sm90.yaml '" + spec.string() + "'");
  CHECK(both.rc == 1);
  CHECK(both.out.find("decode-sm90 (specs/decode_sm90.yaml): 120 variants") != std::string::npos);
}

TEST_CASE("plx gen --out writes the sources and an index.json that parses", "[cli]") {
  TempDir t;
  const fs::path out = t.path / "gen";
  const Run r = run_plx(t, "gen specs/prefill_sm90.yaml --out '" + out.string() + "'");
  REQUIRE(r.rc == 0);
  const plx::ExpandResult ex = plx::expand(plx::load_spec(PLX_SOURCE_DIR "/specs/prefill_sm90.yaml"));
  const plx::json::Value index = plx::json::parse(slurp(out / "index.json"));
  REQUIRE(index.is_array());
  REQUIRE(index.size() == ex.variants.size());
  for (std::size_t i = 0; i < ex.variants.size(); ++i) {
    const plx::json::Value& e = index.as_array()[i];
    CHECK(e.at("name").as_string() == ex.variants[i].name());
    CHECK(e.at("op").as_string() == "prefill");
    CHECK(e.at("arch").as_string() == "sm_90a");
    const fs::path src = out / e.at("file").as_string();
    REQUIRE(fs::is_regular_file(src));
    CHECK(slurp(src).find("#include") != std::string::npos);
  }
  std::size_t cu_files = 0;
  for (const auto& f : fs::directory_iterator(out)) cu_files += f.path().extension() == ".cu";
  CHECK(cu_files == ex.variants.size());
}

TEST_CASE("plx tune on a small spec, then the cache commands over what it compiled", "[cli]") {
  TempDir t;
  const fs::path spec = t.path / "small.yaml";
  plx::write_file_atomic(spec, kSmallSpec);
  const fs::path json = t.path / "report.json", csv = t.path / "report.csv";
  const bool gpu = plx::cu::available();

  // With a GPU this races for real (a few seconds); the [gpu] case below checks that part.
  Run r = run_plx(t, "tune '" + spec.string() + "' --budget-s 6 --json '" + json.string() + "' --csv '" +
                         csv.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("compiled 2 variants") != std::string::npos);
  const plx::json::Value report = plx::json::parse(slurp(json));
  CHECK(report.at("buckets").size() == 6);  // gqa 4 x kv {1024, 8192, 32768} x batch {1, 32}
  CHECK(count_lines(slurp(csv), std::regex("decode,parallax,bf16,64,.*")) == 6);
  // --json FILE also writes the roofline next to it.
  const fs::path svg = t.path / "report.svg";
  REQUIRE(fs::exists(svg));
  CHECK(plx::testing::xml_problem(slurp(svg)) == "");
  CHECK(report.at("schema").as_string() == "parallax-jit tune report");
  for (const auto& b : report.at("buckets").as_array()) {
    CHECK(std::regex_match(b.at("key").as_string(), std::regex("decode_parallax_bf16_d64_causal_bh\\d+_kv\\d+_g4_q1")));
    CHECK(b.at("flags").as_string().find("--op decode ") == 0);
    CHECK(b.at("candidates").size() >= 1);
  }
  if (!gpu) {
    CHECK(slurp(svg).find("predicted by the model (no GPU") != std::string::npos);
    for (const auto& b : report.at("buckets").as_array())
      for (const auto& c : b.at("candidates").as_array()) {
        CHECK(c.at("status").as_string() == "predicted");
        CHECK(c.at("measured_us").is_null());
      }
    CHECK(report.at("summary").at("tuned").as_int() == 0);
    CHECK(count_lines(r.out, std::regex("plx tune: no GPU \\(.+\\): dry run -- specs validated, 2 variants "
                                        "compiled, ranked by the h200 roofline model; nothing was measured and the tuning "
                                        "database is not written")) == 1);
    // The dry run never writes the tuning database.
    CHECK(!std::filesystem::exists(t.path / "cache" / "tuning"));
    CHECK(report.at("measured").as_bool() == false);
    CHECK(r.out.find("memory") != std::string::npos);
    const Run req = run_plx(t, "tune '" + spec.string() + "' --require-gpu");
    CHECK(req.rc == 1);
    CHECK(one_error_line(req));
    CHECK(req.err.find("no GPU") != std::string::npos);
  }

  // Both variants are now in the cache (with a GPU, also the untuned choice the race adds).
  const int entries = gpu ? 3 : 2;
  r = run_plx(t, "cache ls");
  CHECK(r.rc == 0);
  CHECK(r.out.find("plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s2_kauto_sm90a") != std::string::npos);
  CHECK(r.out.find("plx_decode_parallax_bf16_d64_causal_m16_n64_w4_s2_kauto_sm90a") != std::string::npos);
  CHECK(r.out.find(std::to_string(entries) + " entries") != std::string::npos);

  r = run_plx(t, "cache explain plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s2_kauto_sm90a");
  CHECK(r.rc == 0);
  CHECK(r.out.find(": disk hit, key ") != std::string::npos);
  r = run_plx(t, "cache explain plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s3_kauto_sm90a");
  CHECK(r.rc == 0);
  CHECK(r.out.find(": miss, key ") != std::string::npos);
  CHECK(r.out.find("nearest: plx_decode_parallax_bf16_d64") != std::string::npos);
  CHECK(r.out.find("differs: ") != std::string::npos);
  r = run_plx(t, "cache explain plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s2_kauto_sm90a --arch sm_80");
  CHECK(r.rc == 0);
  CHECK(r.out.find(": miss") != std::string::npos);

  r = run_plx(t, "cache verify");
  CHECK(r.rc == 0);
  CHECK(r.out.find(std::to_string(entries) + " entries checked, 0 bad") != std::string::npos);
  // Corrupt one cubin: verify reports it and exits 1; --fix quarantines it.
  fs::path cubin;
  for (const auto& e : fs::recursive_directory_iterator(t.path / "cache"))
    if (e.path().filename() == "kernel.cubin") cubin = e.path();
  REQUIRE(!cubin.empty());
  { std::ofstream(cubin, std::ios::binary | std::ios::app) << "garbage"; }
  r = run_plx(t, "cache verify");
  CHECK(r.rc == 1);
  CHECK(count_lines(r.out, std::regex("bad [0-9a-f]{12} .+: .+")) == 1);
  r = run_plx(t, "cache verify --fix");
  CHECK(r.rc == 1);
  CHECK(r.out.find("(quarantined)") != std::string::npos);
  r = run_plx(t, "cache verify");
  CHECK(r.rc == 0);
  CHECK(r.out.find(std::to_string(entries - 1) + " entries checked, 0 bad") != std::string::npos);

  r = run_plx(t, "cache clear");
  CHECK(r.rc == 0);
  CHECK(r.out.find("removed ") != std::string::npos);
  r = run_plx(t, "cache ls");
  CHECK(r.rc == 0);
  CHECK(r.out.find("0 entries") != std::string::npos);
}

TEST_CASE("plx tune reports a bad spec with file:line:col and exit 1", "[cli]") {
  TempDir t;
  const fs::path bad = t.path / "bad.yaml";
  plx::write_file_atomic(bad, "op: decode\nvariant: [parallax]\ndtype: [bf16]\nhead_dim: [64]\narch: [sm_91]\n");
  const Run r = run_plx(t, "tune '" + bad.string() + "'");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(std::regex_search(r.err, std::regex("bad\\.yaml:5:\\d+: ")));
}

TEST_CASE("plx doctor reports and exits 0 with or without a GPU", "[cli]") {
  TempDir t;
  const Run r = run_plx(t, "doctor");
  CHECK(r.rc == 0);
  for (const char* item : {"plx:", "nvrtc:", "driver:", "gpus:", "cache:", "templates:", "specs:"})
    CHECK(r.out.find(item) != std::string::npos);
  CHECK(r.out.find("(writable") != std::string::npos);
  CHECK(r.out.find("decode_sm90.yaml") != std::string::npos);
}

namespace {
// The identity of the H200 the tests' databases claim (the templates of this build).
plx::GpuIdentity h200_identity() {
  plx::GpuIdentity id;
  id.name = "NVIDIA H200";
  id.cc_major = 9;
  id.sm_count = 132;
  id.driver_version = 13000;
  id.nvrtc_version = "13.0";
  id.template_hash = plx::template_hash();
  return id;
}
}  // namespace

TEST_CASE("plx db show, clear; export/import need this GPU", "[cli]") {
  TempDir t;
  Run r = run_plx(t, "db show");
  CHECK(r.rc == 0);
  CHECK(r.out.find("no tuning database in") != std::string::npos);

  // A database written by the library (as plx tune would), and a corrupt one.
  const plx::GpuIdentity id = h200_identity();
  plx::TuningDb db(t.path / "cache", id);
  plx::DbEntry e;
  e.bucket = "decode_parallax_bf16_d128_causal_bh8_kv8192_g4_q1";
  e.winner = "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s2_kauto_sm90a";
  e.winner_us = 12.5;
  e.predicted_us = 11;
  db.record({e});
  {
    std::ofstream(db.path().parent_path() / "Broken-sm80-108sm.json") << "{";
  }
  r = run_plx(t, "db show");
  CHECK(r.rc == 0);
  CHECK(r.out.find("NVIDIA H200 (sm 9.0, 132 SMs, driver 13000") != std::string::npos);
  CHECK(r.out.find(e.bucket) != std::string::npos);
  CHECK(r.out.find(e.winner) != std::string::npos);
  CHECK(r.out.find("12.50") != std::string::npos);
  CHECK(r.out.find("corrupt:") != std::string::npos);

  if (!plx::cu::available()) {
    r = run_plx(t, "db export '" + (t.path / "x.json").string() + "'");
    CHECK(r.rc == 1);
    CHECK(one_error_line(r));
    CHECK(r.err.find("no GPU") != std::string::npos);
  }

  r = run_plx(t, "db clear");
  CHECK(r.rc == 0);
  CHECK(r.out.find("removed 2 tuning databases") != std::string::npos);
  CHECK(!std::filesystem::exists(db.path()));
}

TEST_CASE("plx db compare: agree, disagree, one-sided buckets, corrupt files", "[cli]") {
  TempDir t;
  const plx::GpuIdentity id = h200_identity();
  const std::string k1 = "decode_parallax_bf16_d128_causal_bh8_kv8192_g4_q1",
                    k2 = "prefill_parallax_bf16_d128_causal_t1024_g4";
  const std::string v1 = "plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_sm90a",
                    v2 = "plx_decode_parallax_bf16_d128_causal_m16_n64_w4_s3_kauto_sm90a";
  auto db = [&](const std::string& name, std::vector<std::tuple<std::string, std::string, double>> rows) {
    plx::DbFile f;
    f.identity = id;
    for (const auto& [bucket, winner, us] : rows) {
      plx::DbEntry e;
      e.bucket = bucket;
      e.winner = winner;
      e.winner_us = us;
      e.noise_us = us * 0.01;
      f.entries[bucket] = e;
    }
    const fs::path p = t.path / name;
    plx::write_file_atomic(p, plx::dump_db(f));
    return "'" + p.string() + "'";
  };
  const std::string a = db("a.json", {{k1, v1, 12.0}, {k2, v1, 300.0}});
  const std::string same = db("same.json", {{k1, v1, 12.05}, {k2, v1, 300.0}});
  const std::string tied = db("tied.json", {{k1, v2, 12.1}, {k2, v1, 301.0}});
  const std::string apart = db("apart.json", {{k1, v2, 13.0}, {k2, v1, 300.0}});
  const std::string fewer = db("fewer.json", {{k1, v1, 12.0}});

  Run r = run_plx(t, "db compare " + a + " " + same);
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
  CHECK(r.out.find("NVIDIA H200 (sm 9.0, 132 SMs") != std::string::npos);
  CHECK(count_lines(r.out, std::regex(k1 + R"(\s+same\s+12\.00\s+12\.05\s+\+0\.42%\s+1\.00%\s+noise_b\s+)" + v1 +
                                      R"(\s+=)")) == 1);
  // (B's recorded noise, 1% of 12.05, is above the floor, 1% of 12.00.)
  CHECK(r.out.find("A: no reproducibility measured (tuned with --no-repeat)") != std::string::npos);
  CHECK(r.out.find("noise decided by") == std::string::npos);
  CHECK(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1) ==
        "agree 2/2 buckets (same winner 2, tied 0), disagree 0\n");

  r = run_plx(t, "db compare " + a + " " + tied);
  CHECK(r.rc == 0);
  CHECK(count_lines(r.out, std::regex(k1 + R"(\s+tied\s.*)" + v1 + R"(\s+)" + v2)) == 1);
  CHECK(r.out.find("agree 2/2 buckets (same winner 1, tied 1), disagree 0\n") != std::string::npos);

  const fs::path json = t.path / "cmp.json";
  r = run_plx(t, "db compare " + a + " " + apart + " --json '" + json.string() + "'");
  CHECK(r.rc == 1);
  CHECK(r.err.empty());
  CHECK(count_lines(r.out, std::regex(k1 + R"(\s+disagree\s.*)")) == 1);
  CHECK(r.out.find("agree 1/2 buckets (same winner 1, tied 0), disagree 1\n") != std::string::npos);
  const plx::json::Value j = plx::json::parse(slurp(json));
  CHECK(j.at("disagree").as_int() == 1);
  CHECK(j.at("all_agree").as_bool() == false);
  CHECK(j.at("buckets").size() == 2);

  // With a reproducibility measured (plx tune --repeat), 8% apart is tied by A's 10%.
  {
    plx::DbFile f = plx::read_db_file(t.path / "apart.json");
    f.repro = plx::DbRepro{0.10, 0.04, 2};
    plx::write_file_atomic(t.path / "apart_repro.json", plx::dump_db(f));
  }
  r = run_plx(t, "db compare '" + (t.path / "apart_repro.json").string() + "' " + a);
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK(r.out.find("A: reproducibility repro_rel 10.00% (p90 of |repeat - winner| / winner over 2 buckets, median "
                   "4.00%)") != std::string::npos);
  CHECK(r.out.find("B: no reproducibility measured") != std::string::npos);
  CHECK(count_lines(r.out, std::regex(k1 + R"(\s+tied\s+13\.00\s+12\.00\s+-8\.33%\s+10\.00%\s+repro_a\s+.*)")) == 1);
  CHECK(r.out.find("noise decided by: repro_a 2\n") != std::string::npos);  // 10% of either time
  CHECK(r.out.find("the reproducibility term tied 1 disagreement") != std::string::npos);
  CHECK(r.out.find("agree 2/2 buckets (same winner 1, tied 1), disagree 0\n") != std::string::npos);

  r = run_plx(t, "db compare " + a + " " + fewer);
  CHECK(r.rc == 1);
  CHECK(r.out.find("only in A (1 buckets):\n  " + k2 + "\n") != std::string::npos);
  CHECK(r.out.find("agree 1/1 buckets (same winner 1, tied 0), disagree 0\n") != std::string::npos);

  plx::write_file_atomic(t.path / "broken.json", "{\"schema\": ");
  r = run_plx(t, "db compare " + a + " '" + (t.path / "broken.json").string() + "'");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(r.err.find((t.path / "broken.json").string() + " is not a tuning database") != std::string::npos);
  CHECK(r.out.empty());
  r = run_plx(t, "db compare '" + (t.path / "nope.json").string() + "' " + a);
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(r.err.find("cannot read") != std::string::npos);
}

TEST_CASE("plx tune --buckets keeps the matching buckets; --arch picks the dry run's arch", "[cli]") {
  TempDir t;
  const fs::path spec = t.path / "small.yaml";
  plx::write_file_atomic(spec, kSmallSpec);
  const fs::path json = t.path / "r.json";
  if (plx::cu::available()) return;  // the dry run's behaviour; the [gpu] case races
  Run r = run_plx(t, "tune '" + spec.string() + "' --buckets '*_bh8_kv1024_*,*_bh256_kv32768_*' --out '" +
                         json.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  const plx::json::Value report = plx::json::parse(slurp(json));
  REQUIRE(report.at("buckets").size() == 2);
  CHECK(report.at("buckets").as_array()[0].at("key").as_string() ==
        "decode_parallax_bf16_d64_causal_bh8_kv1024_g4_q1");
  CHECK(report.at("buckets").as_array()[1].at("key").as_string() ==
        "decode_parallax_bf16_d64_causal_bh256_kv32768_g4_q1");
  // --repeat in a dry run: said plainly, nothing measured, exit 0, no database.
  r = run_plx(t, "tune '" + spec.string() + "' --buckets '*_bh8_kv1024_*' --repeat --repeat-budget-s 3 --out '" +
                     json.string() + "'");
  CHECK(r.rc == 0);
  CHECK(r.out.find("plx tune: --repeat: a dry run does not measure, so no winner is re-timed and no reproducibility") !=
        std::string::npos);
  CHECK(r.out.find("dry run") != std::string::npos);
  CHECK(!fs::exists(t.path / "cache" / "tuning"));
  CHECK(plx::json::parse(slurp(json)).at("summary").at("repro").is_null());
  r = run_plx(t, "tune '" + spec.string() + "' --buckets 'prefill_*'");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(r.err.find("no bucket matches --buckets prefill_*") != std::string::npos);
  // The spec has only sm_90a variants: for sm_80 there is nothing to tune.
  r = run_plx(t, "tune '" + spec.string() + "' --arch sm_80");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(r.err.find("no variants for sm_80") != std::string::npos);
}

TEST_CASE("plx tune on a backward spec: backward buckets ranked by the model (dry run)", "[cli][backward]") {
  TempDir t;
  if (plx::cu::available()) return;  // the dry run's behaviour; the [gpu] case races
  const fs::path spec = t.path / "bwd.yaml", json = t.path / "r.json";
  plx::write_file_atomic(spec, kBackwardSpec);
  Run r = run_plx(t, "tune '" + spec.string() + "' --out '" + json.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("dry run") != std::string::npos);
  CHECK(r.out.find("--op backward --family parallax --dtype bf16 --head-dim 64 --mask causal --batch 1 --q-len "
                   "16384 --kv-len 16384 --heads-q 16 --heads-kv 8") != std::string::npos);
  const plx::json::Value report = plx::json::parse(slurp(json));
  const auto& buckets = report.at("buckets").as_array();
  REQUIRE(buckets.size() == 3);  // gqa 2 x q = kv {1024, 4096, 16384}
  CHECK(buckets[0].at("key").as_string() == "backward_parallax_bf16_d64_causal_bh8_kv1024_g2_q1024");
  CHECK(buckets[2].at("key").as_string() == "backward_parallax_bf16_d64_causal_bh8_kv16384_g2_q16384");
  CHECK(!fs::exists(t.path / "cache" / "tuning"));
  // --buckets narrows backward buckets like forward ones; forward globs match none.
  r = run_plx(t, "tune '" + spec.string() + "' --buckets 'backward_*_kv4096_*' --out '" + json.string() + "'");
  CHECK(r.rc == 0);
  CHECK(plx::json::parse(slurp(json)).at("buckets").size() == 1);
  r = run_plx(t, "tune '" + spec.string() + "' --buckets 'prefill_*'");
  CHECK(r.rc == 1);
  CHECK(r.err.find("no bucket matches --buckets prefill_*") != std::string::npos);
  // explore times forward calls only: a backward spec is refused in one line.
  r = run_plx(t, "explore '" + spec.string() + "'");
  CHECK(r.rc != 0);
  CHECK(one_error_line(r));
  CHECK(r.err.find("backward spec") != std::string::npos);
}

TEST_CASE("plx bench without a GPU: one line, exit 1; plx explore: predicted only", "[cli]") {
  TempDir t;
  if (plx::cu::available()) return;
  Run r = run_plx(t, "bench decode --batch 1,32 --kv-len 4096");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));
  CHECK(r.err.find("no GPU") != std::string::npos);
  CHECK(r.out.empty());
  r = run_plx(t, "bench overhead");
  CHECK(r.rc == 1);
  CHECK(one_error_line(r));

  const fs::path spec = t.path / "small.yaml", json = t.path / "e.json";
  plx::write_file_atomic(spec, kSmallSpec);
  r = run_plx(t, "explore '" + spec.string() + "' --batch 4 --kv-len 5000 --heads-q 32 --heads-kv 8 --json '" +
                     json.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("plx explore: no GPU") != std::string::npos);
  CHECK(r.out.find("predicted only") != std::string::npos);
  CHECK(r.out.find("--batch 4 --q-len 1 --kv-len 5000 --heads-q 32 --heads-kv 8") != std::string::npos);
  CHECK(r.out.find("[decode_parallax_bf16_d64_causal_bh32_kv8192_g4_q1]") != std::string::npos);
  CHECK(count_lines(r.out, std::regex(R"(\s+[12][ *][ u] plx_decode_parallax_bf16_d64_\w+_sm90a\s+[0-9.]+\s.*)")) == 2);
  const plx::json::Value j = plx::json::parse(slurp(json));
  REQUIRE(j.size() == 1);
  CHECK(j.as_array()[0].at("measured").as_bool() == false);
  CHECK(j.as_array()[0].at("variants").size() == 2);
  // Without shape flags: the spec's six buckets.
  r = run_plx(t, "explore '" + spec.string() + "'");
  CHECK(r.rc == 0);
  CHECK(count_lines(r.out, std::regex("bucket [1-6]/6: --op decode .*")) == 6);
}

// ---- GPU -------------------------------------------------------------------------------

TEST_CASE("plx bench on the GPU: a decode and a prefill line, pasteable and rated", "[gpu][cli]") {
  if (!plx::cu::available()) {
    WARN("no GPU: skipped");
    return;
  }
  TempDir t;
  Run r = run_plx(t, "bench decode --batch 1,8 --kv-len 4096 --heads-q 32 --heads-kv 8 --head-dim 128 --budget-s 0.3");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(count_lines(r.out, std::regex(R"(plx bench decode --family parallax --dtype bf16 --head-dim 128 --mask causal )"
                                      R"(--batch [18] --q-len 1 --kv-len 4096 --heads-q 32 --heads-kv 8 --variant )"
                                      R"(plx_decode_\w+  # median [0-9.]+ us \(p10 [0-9.]+, p90 [0-9.]+, n \d+\), )"
                                      R"([0-9.]+ TB/s = \d+% of the measured copy [0-9.]+ TB/s.*)")) == 2);
  WARN(r.out);
  // The printed command runs again (pasteable), here as JSON.
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex(R"(plx bench (decode [^#]+--batch 8[^#]+?)  #)")));
  Run again = run_plx(t, "bench " + m[1].str() + " --budget-s 0.2 --json");
  REQUIRE(again.rc == 0);
  const plx::json::Value row = plx::json::parse(again.out);
  CHECK(row.at("batch").as_int() == 8);
  CHECK(row.at("median_us").as_double() > 0);
  CHECK(row.at("fraction_of_copy").as_double() > 0.05);
  CHECK(row.at("fraction_of_copy").as_double() < 1.2);
  // The ceilings were measured once and stored with the GPU's database.
  r = run_plx(t, "db show");
  CHECK(r.out.find(".json") != std::string::npos);

  r = run_plx(t, "bench prefill --batch 1 --kv-len 2048 --heads-q 16 --heads-kv 8 --head-dim 128 --budget-s 0.3");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(count_lines(r.out, std::regex(R"(plx bench prefill .* --q-len 2048 --kv-len 2048 .*# median .* TFLOP/s )"
                                      R"(Parallax-counted \(8\*D per visible pair\) = [0-9.]+ softmax-counted \(4\*D\); )"
                                      R"(\d+% of the measured tensor-core [0-9]+ TFLOP/s.*)")) == 1);
  WARN(r.out);
}

namespace {
struct TuneRun {
  Run run;
  plx::json::Value report;
};
}  // namespace

TEST_CASE("plx tune on the GPU: two buckets raced, winners recorded, a second tune agrees", "[gpu][cli]") {
  if (!plx::cu::available()) {
    WARN("no GPU: skipped");
    return;
  }
  TempDir t;
  const fs::path spec = t.path / "small.yaml";
  plx::write_file_atomic(spec, kSmallSpec);
  auto tune = [&](int i) {
    const fs::path json = t.path / ("r" + std::to_string(i) + ".json");
    TuneRun tr;
    tr.run = run_plx(t, "tune '" + spec.string() +
                            "' --budget-s 3 --buckets '*_bh8_kv8192_*,*_bh256_kv1024_*' --out '" + json.string() + "'");
    if (fs::exists(json)) tr.report = plx::json::parse(slurp(json));
    return tr;
  };
  const TuneRun a = tune(1);
  INFO(a.run.out << a.run.err);
  REQUIRE(a.run.rc == 0);
  WARN(a.run.out);
  CHECK(a.report.at("measured").as_bool());
  REQUIRE(a.report.at("buckets").size() == 2);
  CHECK(a.report.at("ceilings").at("copy_GBps").as_double() > 500);
  CHECK(plx::testing::xml_problem(slurp(t.path / "r1.svg")) == "");
  // The database has both winners, with the noise they were decided with.
  plx::cu::Device dev(0);
  plx::TuningDb db(t.path / "cache", plx::GpuIdentity::of(dev));
  REQUIRE(db.load() == plx::DbStatus::ok);
  REQUIRE(db.ceilings());
  for (const auto& b : a.report.at("buckets").as_array()) {
    INFO(b.dump(2));
    REQUIRE(b.at("winner").is_string());
    const auto e = db.lookup(b.at("key").as_string());
    REQUIRE(e);
    CHECK(e->winner == b.at("winner").as_string());
    CHECK(e->noise_us > 0);
    // At least as fast as the untuned choice, within noise.
    CHECK(b.at("winner_us").as_double() <= b.at("untuned_us").as_double() + b.at("noise_us").as_double());
    for (const auto& c : b.at("candidates").as_array()) CHECK(c.at("status").as_string() == "timed");
  }
  // Issue 6, point 4: the same winner, or winners whose times differ by less than the noise.
  const TuneRun b2 = tune(2);
  REQUIRE(b2.run.rc == 0);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& x = a.report.at("buckets").as_array()[i];
    const auto& y = b2.report.at("buckets").as_array()[i];
    INFO(x.at("key").as_string() << ": run 1 " << x.at("winner").as_string() << " " << x.at("winner_us").as_double()
                                 << " us (noise " << x.at("noise_us").as_double() << "), run 2 "
                                 << y.at("winner").as_string() << " " << y.at("winner_us").as_double() << " us (noise "
                                 << y.at("noise_us").as_double() << ")");
    const bool same = x.at("winner").as_string() == y.at("winner").as_string();
    // The rule plx db compare applies (measure::compare_runs).
    CHECK((same || plx::measure::compare_runs(x.at("winner_us").as_double(), x.at("noise_us").as_double(),
                                              y.at("winner_us").as_double(), y.at("noise_us").as_double())
                       .tied));
  }
}

TEST_CASE("plx tune on the GPU: a backward spec raced, winners recorded under backward keys", "[gpu][cli][backward]") {
  if (!plx::cu::available()) {
    WARN("no GPU: skipped");
    return;
  }
  plx::cu::Device dev(0);
  if (dev.arch() != plx::Arch::sm90a) {
    WARN("not sm_90a: skipped (the spec is the wgmma backward)");
    return;
  }
  TempDir t;
  const fs::path spec = t.path / "bwd.yaml", json = t.path / "r.json";
  plx::write_file_atomic(spec, kBackwardSpec);
  const Run r = run_plx(t, "tune '" + spec.string() + "' --budget-s 6 --buckets '*_kv1024_*,*_kv4096_*' --out '" +
                               json.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  WARN(r.out);
  const plx::json::Value report = plx::json::parse(slurp(json));
  REQUIRE(report.at("buckets").size() == 2);
  plx::TuningDb db(t.path / "cache", plx::GpuIdentity::of(dev));
  REQUIRE(db.load() == plx::DbStatus::ok);
  for (const auto& b : report.at("buckets").as_array()) {
    INFO(b.dump(2));
    REQUIRE(b.at("winner").is_string());
    CHECK(b.at("key").as_string().rfind("backward_", 0) == 0);
    const auto e = db.lookup(b.at("key").as_string());
    REQUIRE(e);
    CHECK(e->winner == b.at("winner").as_string());
    CHECK(e->winner.rfind("plx_backward_", 0) == 0);
    for (const auto& c : b.at("candidates").as_array()) CHECK(c.at("status").as_string() == "timed");
  }
}
