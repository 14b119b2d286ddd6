// The `plx` executable end to end, as a user runs it: exit statuses, one-line errors,
// gen's listing and files, a dry-run tune of a two-variant spec, and the cache commands
// over the entries that tune compiled. Every run gets PLX_CACHE_DIR in a private temp dir.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "autotune/tuning_db.hpp"
#include "generator/expand.hpp"
#include "generator/spec.hpp"
#include "runtime/driver.hpp"

namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = "/tmp/plx-cli-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

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

}  // namespace

TEST_CASE("plx --help is grouped; every command has --help; --version", "[cli]") {
  TempDir t;
  Run r = run_plx(t, "--help");
  CHECK(r.rc == 0);
  for (const char* group : {"Kernels", "Tuning:", "Compile cache:", "Environment:", "gen SPEC", "tune", "doctor"})
    CHECK(r.out.find(group) != std::string::npos);
  for (const char* cmd : {"gen", "tune", "db", "cache", "doctor"}) {
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
                           "db export", "db show extra", "db clear --force"}) {
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

  Run r = run_plx(t, "tune '" + spec.string() + "' --json '" + json.string() + "' --csv '" + csv.string() + "'");
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("compiled 2 variants") != std::string::npos);
  const plx::json::Value report = plx::json::parse(slurp(json));
  CHECK(report.at("buckets").size() == 6);  // gqa 4 x kv {1024, 8192, 32768} x batch {1, 32}
  CHECK(count_lines(slurp(csv), std::regex("decode,parallax,bf16,64,.*")) == 6);
  if (!gpu) {
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

  // Both variants are now in the cache.
  r = run_plx(t, "cache ls");
  CHECK(r.rc == 0);
  CHECK(r.out.find("plx_decode_parallax_bf16_d64_causal_m8_n64_w4_s2_kauto_sm90a") != std::string::npos);
  CHECK(r.out.find("plx_decode_parallax_bf16_d64_causal_m16_n64_w4_s2_kauto_sm90a") != std::string::npos);
  CHECK(r.out.find("2 entries") != std::string::npos);

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
  CHECK(r.out.find("2 entries checked, 0 bad") != std::string::npos);
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
  CHECK(r.out.find("1 entries checked, 0 bad") != std::string::npos);

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

TEST_CASE("plx db show, clear; export/import need this GPU", "[cli]") {
  TempDir t;
  Run r = run_plx(t, "db show");
  CHECK(r.rc == 0);
  CHECK(r.out.find("no tuning database in") != std::string::npos);

  // A database written by the library (as plx tune would), and a corrupt one.
  plx::GpuIdentity id;
  id.name = "NVIDIA H200";
  id.cc_major = 9;
  id.sm_count = 132;
  id.driver_version = 13000;
  id.nvrtc_version = "13.0";
  id.template_hash = plx::template_hash();
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
