// Hostile input for the spec parser: every input must either parse into a spec that expands
// cleanly, or throw plx::SpecError with one non-empty line starting "NAME:LINE:COL: ".
// Nothing else may escape and nothing may crash. Deterministic (seeded PRNG).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "generator/expand.hpp"
#include "generator/legality.hpp"
#include "generator/spec.hpp"
#include "parallax/errors.hpp"

using namespace plx;
namespace fs = std::filesystem;

namespace {

const char* const kShipped[] = {"decode_sm90.yaml", "decode_sm80.yaml", "prefill_sm90.yaml", "prefill_sm80.yaml"};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> shipped_texts() {
  std::vector<std::string> out;
  for (const char* f : kShipped) {
    out.push_back(read_file(fs::path(PLX_SOURCE_DIR) / "specs" / f));
    REQUIRE(!out.back().empty());
  }
  return out;
}

struct Tally {
  size_t parsed = 0, rejected = 0;
};

// "NAME:<digits>:<digits>: <something>", one line.
bool well_formed(const std::string& msg, const std::string& name) {
  if (msg.empty() || msg.find('\n') != std::string::npos || msg.find('\r') != std::string::npos) return false;
  if (msg.rfind(name + ":", 0) != 0) return false;
  size_t i = name.size() + 1;
  for (int field = 0; field < 2; ++field) {
    size_t start = i;
    while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') ++i;
    if (i == start || i >= msg.size() || msg[i] != ':') return false;
    ++i;
  }
  return i + 1 < msg.size() && msg[i] == ' ';
}

// Parses one input and checks the contract; returns a description of a violation or "".
std::string check_one(const std::string& text, const std::string& name, Tally& t) {
  try {
    KernelSpec s = parse_spec(text, name);
    // A spec that parses must be usable: non-empty axes and a clean expansion.
    if (s.families.empty() || s.dtypes.empty() || s.head_dims.empty() || s.archs.empty() ||
        s.causal.empty() || s.windows.empty() || s.gqa.empty() || s.tile.block_m.empty() ||
        s.tile.block_n.empty() || s.tile.warps.empty() || s.tile.stages.empty() || s.tile.split_kv.empty()) {
      return "parsed into a spec with an empty axis";
    }
    ExpandResult r = expand(s);
    for (const auto& v : r.variants)
      if (why_illegal(v)) return "expand() returned an illegal variant " + v.name();
    for (const auto& d : r.dropped)
      if (d.reason.empty() || d.reason.find('\n') != std::string::npos) return "bad drop reason for " + d.v.name();
    ++t.parsed;
    return "";
  } catch (const SpecError& e) {
    ++t.rejected;
    std::string m = e.what();
    if (!well_formed(m, name)) return "malformed message: " + m;
    return "";
  } catch (const std::exception& e) {
    return std::string("non-SpecError exception: ") + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

#define PLX_EXPECT_OK(text, name, tally)                                                    \
  do {                                                                                      \
    std::string plx_problem_ = check_one((text), (name), (tally));                          \
    if (!plx_problem_.empty()) FAIL(plx_problem_ << "\n--- input (" << (text).size()       \
                                                 << " bytes) ---\n" << (text).substr(0, 400)); \
  } while (0)

std::string billion_laughs(int levels, int width, const std::string& target_key) {
  std::string s = "op: decode\nvariant: parallax\nhead_dim: 64\narch: sm_90a\n";
  s += "lol0: &lol0 [bf16, bf16, bf16, bf16, bf16, bf16, bf16, bf16, bf16]\n";
  for (int i = 1; i < levels; ++i) {
    s += "lol" + std::to_string(i) + ": &lol" + std::to_string(i) + " [";
    for (int j = 0; j < width; ++j) s += (j ? ", *lol" : "*lol") + std::to_string(i - 1);
    s += "]\n";
  }
  s += target_key + ": *lol" + std::to_string(levels - 1) + "\n";
  return s;
}

}  // namespace

TEST_CASE("fuzz: every truncation of every shipped spec", "[spec][fuzz]") {
  Tally t;
  for (const auto& text : shipped_texts()) {
    for (size_t n = 0; n <= text.size(); ++n) PLX_EXPECT_OK(text.substr(0, n), "trunc.yaml", t);
    // and every suffix (a file whose start was lost)
    for (size_t n = 0; n <= text.size(); n += 3) PLX_EXPECT_OK(text.substr(n), "tail.yaml", t);
  }
  CHECK(t.parsed > 0);
  CHECK(t.rejected > 0);
}

TEST_CASE("fuzz: seeded random byte mutations of the shipped specs", "[spec][fuzz]") {
  auto texts = shipped_texts();
  std::mt19937_64 rng(0x9a7a11a5);
  // Bytes that matter to YAML, plus junk.
  const std::string alphabet = std::string(":-[]{},#&*!|>'\"%@`?~\t\n\r ") + std::string("\0\x01\x7f\x80\xc3\xff", 6) +
                               "0123456789.eE+-_abcxyz";
  Tally t;
  const int kMutations = 4000;
  for (int i = 0; i < kMutations; ++i) {
    std::string s = texts[rng() % texts.size()];
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips && !s.empty(); ++f) {
      size_t at = rng() % s.size();
      switch (rng() % 5) {
        case 0: s[at] = static_cast<char>(rng() & 0xff); break;                    // random byte
        case 1: s[at] = alphabet[rng() % alphabet.size()]; break;                  // structural byte
        case 2: s.erase(at, 1 + rng() % 16); break;                                // deletion
        case 3: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;         // insertion
        default: {                                                                 // duplicate a chunk
          size_t from = rng() % s.size(), len = 1 + rng() % 40;
          s.insert(at, s.substr(from, len));
        }
      }
    }
    PLX_EXPECT_OK(s, "mut.yaml", t);
  }
  CHECK(t.parsed + t.rejected == kMutations);
  CHECK(t.rejected > 0);
}

TEST_CASE("fuzz: random binary junk", "[spec][fuzz]") {
  std::mt19937_64 rng(12345);
  Tally t;
  for (int i = 0; i < 400; ++i) {
    std::string s(rng() % 600, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    PLX_EXPECT_OK(s, "junk.bin", t);
  }
  // Printable junk is closer to YAML and goes deeper into the parser.
  const std::string printable = " \n:-[]{},#&*!abc012";
  for (int i = 0; i < 1500; ++i) {
    std::string s(rng() % 200, ' ');
    for (auto& c : s) c = printable[rng() % printable.size()];
    PLX_EXPECT_OK(s, "junk.txt", t);
  }
  CHECK(t.rejected > 0);
}

TEST_CASE("fuzz: deep nesting, alias bombs, huge inputs", "[spec][fuzz]") {
  Tally t;
  const std::string head = "op: decode\nvariant: parallax\nhead_dim: 64\narch: sm_90a\n";
  std::vector<std::string> inputs = {
      std::string(10000, '['),
      std::string(10000, '[') + std::string(10000, ']'),
      std::string(10000, '{'),
      head + "dtype: " + std::string(10000, '['),
      head + "dtype: " + std::string(10000, '[') + "bf16" + std::string(10000, ']'),
      head + "tile:\n  block_n: " + std::string(5000, '{'),
  };
  {
    std::string s;
    for (int i = 0; i < 10000; ++i) s += "{a: ";
    inputs.push_back(s);
    std::string dashes;
    for (int i = 0; i < 10000; ++i) dashes += "- ";
    inputs.push_back(dashes + "x\n");
    inputs.push_back(head + "dtype:\n  " + dashes + "bf16\n");
    std::string keys;
    for (int i = 0; i < 3000; ++i) keys += std::string(static_cast<size_t>(i), ' ') + "k:\n";
    inputs.push_back(keys);
  }
  // "Billion laughs": 9^9 references if anything expanded them.
  for (const char* key : {"dtype", "lolz", "gqa"}) inputs.push_back(billion_laughs(9, 9, key));
  inputs.push_back(billion_laughs(9, 9, "tile") + "\n");
  {
    std::string s = head + "dtype: &d bf16\n";
    s += "gqa: &g [1, 2]\ncausal: *g\n";  // an alias of the wrong type
    inputs.push_back(s);
    std::string many = head + "x: &x bf16\ndtype: [";
    for (int i = 0; i < 5000; ++i) many += i ? ", *x" : "*x";
    inputs.push_back(many + "]\n");
    std::string self = head + "tile: &t {block_n: *t}\ndtype: bf16\n";  // alias of an unfinished anchor
    inputs.push_back(self);
    inputs.push_back(head + "dtype: *nowhere\n");
    inputs.push_back(head + "dtype: &a &b bf16\n");
  }
  // Huge numbers and long values.
  for (const char* v : {"99999999999", "1e30", "-1e30", "1e400", "18446744073709551616", "-9223372036854775809",
                        "0x7fffffff", "0b11", "1_000", ".inf", "-.inf", ".nan", "NaN", "12e", "--1", "++1"}) {
    for (const char* key : {"head_dim", "gqa", "window", "qk_scale"})
      inputs.push_back(head + "dtype: bf16\n" + key + ": " + v + "\n");
    inputs.push_back(head + "dtype: bf16\ntile:\n  block_n: " + std::string(v) + "\n");
    inputs.push_back(head + "dtype: bf16\ntile:\n  stages: {from: 1, to: " + std::string(v) + "}\n");
    inputs.push_back(head + "dtype: bf16\ntile:\n  stages: {from: " + std::string(v) + ", to: 8, mul: " + v + "}\n");
  }
  inputs.push_back(head + "dtype: " + std::string(200000, '9') + "\n");
  inputs.push_back(head + "name: " + std::string(100000, 'a') + "\n");
  inputs.push_back(head + "dtype: [" + [] {
    std::string s;
    for (int i = 0; i < 20000; ++i) s += (i ? ", " : "") + std::to_string(i);
    return s;
  }() + "]\n");
  inputs.push_back(head + "window: [" + [] {
    std::string s;
    for (int i = 1; i <= 5000; ++i) s += (i > 1 ? ", " : "") + std::to_string(i);
    return s;
  }() + "]\n");
  inputs.push_back(std::string(kSpecMaxBytes + 10, '#'));
  inputs.push_back(head + "dtype: bf16\nwindow: {from: 1, to: 16777216}\n");
  inputs.push_back(head + "dtype: bf16\ntile: {block_n: {from: 16, to: 1024, mul: 1024}}\n");
  // The largest range allowed still parses quickly.
  inputs.push_back(head + "dtype: [bf16, fp16]\nwindow: {from: 1, to: 4096}\n");
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : inputs) PLX_EXPECT_OK(s, "deep.yaml", t);
  CHECK(t.rejected > 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("fuzz: wrong types in every slot", "[spec][fuzz]") {
  Tally t;
  const char* keys[] = {"name", "op", "variant", "dtype", "head_dim", "gqa", "causal", "window", "qk_scale", "arch", "tile",
                        "tile.block_m", "tile.block_n", "tile.warps", "tile.stages", "tile.split_kv"};
  const char* values[] = {"", "~", "null", "[]", "{}", "[[]]", "[{}]", "{a: 1}", "{from: 1}", "{from: 1, to: 2}",
                          "true", "false", "yes", "0", "-1", "1", "64", "3.5", "'64'", "\"bf16\"", "!!str 64",
                          "!custom x", "&a 1", "*a", "|\n  literal", ">\n  folded", "[1, [2]]", "[a, b, a]",
                          "? complex\n", "auto", "[auto, auto]", "\"\\x00\"", "'\xff\xfe'", "\xc3\x28", "- x",
                          "[1,", "{", "}", "]", "\t64", "@bad", "`bad`", "%YAML 1.2"};
  const std::string base = "op: prefill\nvariant: softmax\ndtype: bf16\nhead_dim: 64\narch: sm_80\n";
  for (const char* key : keys) {
    for (const char* v : values) {
      std::string k = key;
      std::string text;
      if (k.rfind("tile.", 0) == 0) text = base + "tile:\n  " + k.substr(5) + ": " + v + "\n";
      else text = "# header\n" + k + ": " + v + "\n" + base;
      PLX_EXPECT_OK(text, "types.yaml", t);
      // The same value as a list item and inside a range.
      PLX_EXPECT_OK(base + "gqa: [1, " + v + "]\n", "types.yaml", t);
      PLX_EXPECT_OK(base + "tile:\n  stages: {from: " + v + ", to: 4}\n", "types.yaml", t);
    }
  }
  CHECK(t.rejected > 0);
}

TEST_CASE("fuzz: odd documents: empty, comments, tabs, non-UTF-8, BOMs, NULs", "[spec][fuzz]") {
  Tally t;
  const std::string good = "op: decode\nvariant: parallax\ndtype: bf16\nhead_dim: 64\narch: sm_90a\n";
  std::vector<std::string> inputs = {
      "", " ", "\n\n\n", "# only\n# comments\n", "---", "---\n...\n", "...", "~", "null", "---\n---\n",
      "\t", "\top: decode\n", "op:\tdecode\n", "op: decode\n\tvariant: parallax\n", good + "tile:\n\tblock_n: 64\n",
      good + "tile:\n  \tblock_n: 64\n", "%YAML 1.2\n---\n" + good, "%TAG ! tag:x,2000:\n---\n" + good,
      "%BOGUS\n" + good, "\xef\xbb\xbf" + good,                         // UTF-8 BOM
      std::string("\xff\xfe", 2) + "o\0p\0:\0 \0d\0", std::string("\xfe\xff\0o\0p", 6),  // UTF-16 BOMs
      std::string("\0\0\xfe\xff", 4), std::string("op: de\0code\n", 12), std::string(64, '\0'),
      "op: d\xe9" "code\n", "op: \xc3\x28\n", "\xf0\x28\x8c\x28: 1\n", "op: \xed\xa0\x80\n", "\xc0\xaf: x\n",
      good + "name: caf\xc3\xa9\n", good + "name: \xff\n", good + "\xff\xff\xff\n", good + "dtype: bf16\n",
      good + "\r\n", std::string("op: decode\r\nvariant: parallax\r\ndtype: bf16\r\nhead_dim: 64\r\narch: sm_90a\r\n"),
      "op: decode\rvariant: parallax\r", good + "---\n" + good, good + "...\n", good + "--- !!map\n",
      "!!map\n" + good, "!!seq\n- a\n", "!custom\n" + good, "--- |\n  text\n", "'just a string'", "42", "[1, 2]",
      "{op: decode, variant: parallax, dtype: bf16, head_dim: 64, arch: sm_90a}",
      "{op: decode, variant: parallax, dtype: bf16, head_dim: 64, arch: sm_90a",
      "? op\n: decode\n", "op: &o decode\nvariant: *o\n", "<<: {op: decode}\n" + good.substr(11),
      good + "<<: *x\n", good + "tile: {<<: {block_n: 64}}\n",
  };
  for (const auto& s : inputs) PLX_EXPECT_OK(s, "odd.yaml", t);
  CHECK(t.parsed > 0);
  CHECK(t.rejected > 0);
}

TEST_CASE("fuzz: files on disk: empty, binary, directory, missing, unreadable names", "[spec][fuzz]") {
  fs::path dir = fs::path(PLX_BINARY_DIR) / "test_spec_fuzz_tmp";
  fs::remove_all(dir);
  fs::create_directories(dir / "a_dir.yaml");
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return dir / name;
  };
  std::vector<fs::path> paths = {
      write("empty.yaml", ""), write("comments.yaml", "# nothing here\n"),
      write("binary.yaml", std::string("\x00\x01\x02\xff\xfe", 5)), write("spaces in name.yaml", "op: decode\n"),
      dir / "a_dir.yaml", dir / "missing.yaml", dir / "missing" / "deeper.yaml", fs::path(""),
      write("big.yaml", std::string(kSpecMaxBytes + 1, ' ')),
  };
  for (const auto& p : paths) {
    INFO(p.string());
    try {
      load_spec(p);
      FAIL("expected a SpecError");
    } catch (const SpecError& e) {
      std::string m = e.what();
      CHECK(!m.empty());
      CHECK(m.find('\n') == std::string::npos);
      CHECK(m.rfind(p.string() + ":", 0) == 0);
    } catch (...) {
      FAIL("non-SpecError exception");
    }
  }
  fs::remove_all(dir);
}
