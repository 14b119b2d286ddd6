#include "generator/spec.hpp"

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <type_traits>
#include <utility>

#include "parallax/errors.hpp"

namespace plx {

double KernelSpec::qk_scale_for(int head_dim) const {
  if (qk_scale) return *qk_scale;
  return head_dim > 0 ? 1.0 / std::sqrt(static_cast<double>(head_dim)) : 1.0;
}

std::vector<bool> KernelSpec::window_flags() const {
  std::vector<bool> out;
  for (int w : windows) {
    bool f = w >= 0;
    bool seen = false;
    for (bool g : out) seen = seen || g == f;
    if (!seen) out.push_back(f);
  }
  return out;
}

namespace {

// ---- message helpers ------------------------------------------------------------------

// A value quoted into a message: printable ASCII kept, everything else escaped, cut short,
// so the message stays one readable line whatever bytes the file holds.
std::string printable(std::string_view s, size_t max_chars = 48) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

// The file name is kept verbatim (so messages start with it) except for control characters.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

struct Pos {
  int line = 1, col = 1;
};
Pos pos_of(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }

// How a node reads in "got ..." (scalars quoted, containers by kind).
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Sequence: return n.size() == 0 ? "an empty list" : "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar:
      if (is_quoted(n)) return fmt::format("'\"{}\"'", printable(n.Scalar()));
      return fmt::format("'{}'", printable(n.Scalar()));
    default: return "an undefined node";
  }
}

// ---- integer domains ------------------------------------------------------------------

struct IntDomain {
  long long lo = 1, hi = 1;
  long long multiple = 1;
  bool auto_ok = false;       // the scalar `auto` reads as 0
  bool minus_one_ok = false;  // -1 is allowed besides lo..hi (window: no window)
  std::string expected;
  bool ok(long long v) const {
    if (minus_one_ok && v == -1) return true;
    return v >= lo && v <= hi && v % multiple == 0;
  }
};

std::optional<long long> parse_int(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty() || s[0] == '+') return std::nullopt;
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

const IntDomain kHeadDim{8, 512, 8, false, false, "a positive integer multiple of 8 in 8..512"};
const IntDomain kGqa{1, 256, 1, false, false,
                     "a GQA group size (heads_q / heads_kv), an integer in 1..256"};
const IntDomain kWindow{1, 1 << 24, 1, false, true,
                        "-1 (no window) or a window width in keys in 1..16777216"};
const IntDomain kBlockM{8, 1024, 8, false, false, "a positive integer multiple of 8 in 8..1024"};
const IntDomain kBlockN{16, 1024, 16, false, false,
                        "a positive integer multiple of 16 in 16..1024"};
const IntDomain kWarps{1, 16, 1, false, false, "an integer in 1..16"};
const IntDomain kStages{1, 8, 1, false, false, "an integer in 1..8"};
const IntDomain kSplitDecode{1, 1024, 1, true, false,
                             "auto or a positive split count in 1..1024"};
const IntDomain kSplitPrefill{1, 1, 1, true, false,
                              "auto or 1 (prefill does not split the keys)"};
const IntDomain kStep{1, 1 << 30, 1, false, false, "a positive integer step"};
const IntDomain kMul{2, 1024, 1, false, false, "an integer factor in 2..1024"};

// Records where each document starts; ignores everything else.
struct DocCounter : YAML::EventHandler {
  int count = 0;
  YAML::Mark starts[3];
  void OnDocumentStart(const YAML::Mark& m) override {
    if (count < 3) starts[count] = m;
    ++count;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// ---- the parser -----------------------------------------------------------------------

struct Entry {
  std::string key;  // as written (already checked to be one of the allowed names)
  YAML::Node knode, vnode;
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(one_line(file)) {}

  [[noreturn]] void fail(const YAML::Mark& m, std::string_view what) const {
    Pos p = pos_of(m);
    throw SpecError(fmt::format("{}:{}:{}: {}", file_, p.line, p.col, what));
  }
  [[noreturn]] void bad(const YAML::Mark& m, std::string_view key, std::string_view got,
                        std::string_view expected) const {
    fail(m, fmt::format("key '{}': got {}, expected {}", key, got, expected));
  }

  // Where to point for a value: the value itself, or its key when the value is empty
  // (yaml-cpp marks an empty value at the start of the next line).
  static YAML::Mark mark_of(const Entry& e) {
    return e.vnode.IsNull() ? e.knode.Mark() : e.vnode.Mark();
  }

  // The entries of a mapping, in document order; unknown, duplicate and non-scalar keys fail.
  std::vector<Entry> entries(const YAML::Node& map, const std::string& prefix,
                             const std::vector<std::string_view>& allowed) const {
    std::string allowed_list;
    for (auto a : allowed) allowed_list += (allowed_list.empty() ? "" : ", ") + std::string(a);
    std::vector<Entry> out;
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies: the iterator hands out a temporary pair.
      const YAML::Node k = it->first;
      const YAML::Node val = it->second;
      if (!k.IsScalar()) {
        bad(k.Mark(), prefix.empty() ? "(top level)" : prefix, fmt::format("{} as a key", describe(k)),
            "a key name, one of " + allowed_list);
      }
      std::string name = k.Scalar();
      std::string path = prefix.empty() ? printable(name) : prefix + "." + printable(name);
      bool known = false;
      for (auto a : allowed) known = known || a == name;
      if (!known) bad(k.Mark(), path, "an unknown key", "one of " + allowed_list);
      for (const auto& e : out) {
        if (e.key == name) {
          Pos first = pos_of(e.knode.Mark());
          bad(k.Mark(), path, fmt::format("the key a second time (first at {}:{})", first.line, first.col),
              "each key once");
        }
      }
      out.push_back({name, k, val});
    }
    return out;
  }

  [[noreturn]] void missing(const YAML::Node& map, std::string_view key,
                            std::string_view expected) const {
    bad(map.Mark(), key, "no value (the key is missing)", expected);
  }

  static const Entry* find(const std::vector<Entry>& es, std::string_view key) {
    for (const auto& e : es)
      if (e.key == key) return &e;
    return nullptr;
  }

  // Scalars we read carry no explicit tag (plain `?` or quoted `!`).
  void check_tag(const YAML::Node& n, std::string_view key, std::string_view expected) const {
    const std::string& t = n.Tag();
    if (!t.empty() && t != "?" && t != "!") {
      bad(n.Mark(), key, fmt::format("{} with the tag '{}'", describe(n), printable(t)),
          fmt::format("{} (explicit YAML tags are not supported)", expected));
    }
  }

  int int_item(const YAML::Node& n, std::string_view key, const IntDomain& dom) const {
    if (!n.IsScalar()) bad(n.Mark(), key, describe(n), dom.expected);
    check_tag(n, key, dom.expected);
    const std::string& s = n.Scalar();
    if (dom.auto_ok && s == "auto") return 0;
    if (is_quoted(n)) bad(n.Mark(), key, describe(n), dom.expected + " (unquoted)");
    auto v = parse_int(s);
    if (!v || !dom.ok(*v)) bad(n.Mark(), key, describe(n), dom.expected);
    return static_cast<int>(*v);
  }

  bool bool_item(const YAML::Node& n, std::string_view key) const {
    static const std::string expected = "true or false";
    if (!n.IsScalar()) bad(n.Mark(), key, describe(n), expected);
    check_tag(n, key, expected);
    const std::string& s = n.Scalar();
    if (!is_quoted(n)) {
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    bad(n.Mark(), key, describe(n), expected);
  }

  template <class T, class ParseFn>
  T enum_item(const YAML::Node& n, std::string_view key, std::string_view expected,
              ParseFn parse) const {
    if (!n.IsScalar()) bad(n.Mark(), key, describe(n), expected);
    check_tag(n, key, expected);
    auto v = parse(n.Scalar());
    if (!v) bad(n.Mark(), key, describe(n), expected);
    return *v;
  }

  // {from: a, to: b[, step: s | mul: m]} -> the values, each checked against dom.
  std::vector<int> range(const YAML::Node& map, const std::string& key, const IntDomain& dom) const {
    auto es = entries(map, key, {"from", "to", "step", "mul"});
    IntDomain ends = dom;
    ends.auto_ok = false;
    const Entry* from = find(es, "from");
    const Entry* to = find(es, "to");
    const Entry* step = find(es, "step");
    const Entry* mul = find(es, "mul");
    if (!from) bad(map.Mark(), key + ".from", "no value (the key is missing)", "the first value of the range");
    if (!to) bad(map.Mark(), key + ".to", "no value (the key is missing)", "the last value of the range");
    if (step && mul) {
      const Entry* second = step->knode.Mark().pos > mul->knode.Mark().pos ? step : mul;
      bad(second->knode.Mark(), key + "." + second->key, "both step and mul", "at most one of step or mul");
    }
    auto item = [&](const Entry* e, const IntDomain& d) {
      if (e->vnode.IsNull()) bad(mark_of(*e), key + "." + e->key, "nothing", d.expected);
      return static_cast<long long>(int_item(e->vnode, key + "." + e->key, d));
    };
    // `to` is a bound: any integer from the domain's span, not necessarily a value of it
    // ({from: 16, to: 100, mul: 2} is 16, 32, 64).
    IntDomain bound = ends;
    bound.multiple = 1;
    bound.lo = dom.minus_one_ok ? -1 : dom.lo;
    bound.expected = fmt::format("an integer bound in {}..{}", bound.lo, dom.hi);
    long long a = item(from, ends);
    long long b = item(to, bound);
    if (b < a) {
      bad(to->vnode.Mark(), key + ".to", describe(to->vnode),
          fmt::format("a value >= from ({})", a));
    }
    std::vector<int> out;
    auto too_many = [&](long long n) {
      bad(map.Mark(), key, fmt::format("a range of {} values", n),
          fmt::format("at most {} values", kSpecMaxRangeValues));
    };
    if (mul) {
      long long m = item(mul, kMul);
      if (a < 1) bad(from->vnode.Mark(), key + ".from", describe(from->vnode), "a positive start for a mul range");
      for (long long v = a; v <= b; v *= m) out.push_back(static_cast<int>(v));
    } else {
      long long s = step ? item(step, kStep) : 1;
      long long n = (b - a) / s + 1;
      if (n > kSpecMaxRangeValues) too_many(n);
      for (long long v = a; v <= b; v += s) out.push_back(static_cast<int>(v));
    }
    if (static_cast<long long>(out.size()) > kSpecMaxRangeValues) too_many(static_cast<long long>(out.size()));
    for (int v : out) {
      if (!dom.ok(v)) bad(map.Mark(), key, fmt::format("'{}' from the range", v), dom.expected);
    }
    return out;
  }

  // A list-valued key: a scalar, a list, or a range (ints only; lists may hold ranges too).
  // Never empty, at most kSpecMaxRangeValues values, each value once. item(node) reads one
  // scalar; range_dom (ints only) allows range maps.
  template <class T, class ItemFn>
  std::vector<T> list(const Entry& e, const std::string& key, std::string_view expected,
                      ItemFn item, const IntDomain* range_dom) const {
    struct Got {
      T v;
      YAML::Mark mark;
      std::string text;
    };
    std::vector<Got> got;
    auto add = [&](T v, const YAML::Mark& m, std::string text) {
      for (const auto& g : got) {
        if (g.v == v) {
          Pos first = pos_of(g.mark);
          bad(m, key, fmt::format("{} again (first at {}:{})", text, first.line, first.col),
              "each value once");
        }
      }
      if (static_cast<long long>(got.size()) >= kSpecMaxRangeValues) {
        bad(m, key, fmt::format("more than {} values", kSpecMaxRangeValues),
            fmt::format("at most {} values", kSpecMaxRangeValues));
      }
      got.push_back({v, m, std::move(text)});
    };
    auto one = [&](const YAML::Node& n, bool in_list) {
      if (n.IsScalar()) {
        add(item(n), n.Mark(), describe(n));
      } else if (n.IsMap() && range_dom) {
        if constexpr (std::is_same_v<T, int>) {
          for (int v : range(n, key, *range_dom)) add(v, n.Mark(), fmt::format("'{}' (from a range)", v));
        }
      } else {
        std::string what = describe(n);
        if (in_list && n.IsSequence()) what = "a list inside the list";
        if (in_list && n.IsNull()) what = "an empty list item";
        bad(n.IsNull() && !in_list ? mark_of(e) : n.Mark(), key, what, expected);
      }
    };
    const YAML::Node& v = e.vnode;
    if (v.IsSequence()) {
      if (v.size() == 0) {
        bad(v.Mark(), key, "an empty list", fmt::format("at least one value ({})", expected));
      }
      for (auto it = v.begin(); it != v.end(); ++it) one(*it, true);
    } else {
      one(v, false);
    }
    std::vector<T> out;
    out.reserve(got.size());
    for (auto& g : got) out.push_back(g.v);
    return out;
  }

  std::vector<int> ints(const Entry& e, const std::string& key, const IntDomain& dom) const {
    return list<int>(e, key, dom.expected, [&](const YAML::Node& n) { return int_item(n, key, dom); }, &dom);
  }

  std::optional<double> qk_scale(const Entry& e) const {
    static const std::string expected = "auto or a positive finite float in 1e-06..1e+06";
    const YAML::Node& n = e.vnode;
    if (!n.IsScalar()) bad(mark_of(e), "qk_scale", describe(n), expected);
    check_tag(n, "qk_scale", expected);
    std::string s = n.Scalar();
    if (s == "auto") return std::nullopt;
    if (is_quoted(n)) bad(n.Mark(), "qk_scale", describe(n), expected + " (unquoted)");
    std::string lower;  // YAML's .inf/.nan spellings and from_chars' inf/nan/infinity
    for (char c : s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    std::string_view word = lower;
    if (!word.empty() && (word[0] == '+' || word[0] == '-')) word.remove_prefix(1);
    if (!word.empty() && word[0] == '.') word.remove_prefix(1);
    if (word == "inf" || word == "infinity" || word == "nan") {
      bad(n.Mark(), "qk_scale", describe(n), expected + " (NaN and inf are not allowed)");
    }
    std::string_view body = s;
    if (!body.empty() && body[0] == '+') body.remove_prefix(1);
    double v = 0;
    auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
    if (body.empty() || ec != std::errc() || p != body.data() + body.size() || !std::isfinite(v) ||
        !(v >= 1e-6 && v <= 1e6)) {
      bad(n.Mark(), "qk_scale", describe(n), expected);
    }
    return v;
  }

  std::string name(const Entry& e) const {
    static const std::string expected = "a name of 1..64 characters from A-Z a-z 0-9 _ . -";
    const YAML::Node& n = e.vnode;
    if (!n.IsScalar()) bad(mark_of(e), "name", describe(n), expected);
    check_tag(n, "name", expected);
    const std::string& s = n.Scalar();
    bool ok = !s.empty() && s.size() <= 64;
    for (char c : s) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-');
    }
    if (!ok) bad(n.Mark(), "name", describe(n), expected);
    return s;
  }

  TileAxes tile(const Entry* e, Op op) const {
    TileAxes t;
    if (op == Op::decode) t = {{16}, {64}, {4}, {2}, {0}};
    else if (op == Op::backward) t = {{64}, {32}, {4}, {2}, {1}};
    else t = {{64}, {64}, {4}, {2}, {1}};
    if (!e) return t;
    if (!e->vnode.IsMap()) {
      bad(mark_of(*e), "tile", describe(e->vnode),
          "a mapping of block_m, block_n, warps, stages, split_kv, mma, loader");
    }
    auto es = entries(e->vnode, "tile", {"block_m", "block_n", "warps", "stages", "split_kv", "mma", "loader"});
    for (const auto& x : es) {
      std::string key = "tile." + x.key;
      if (x.key == "block_m") t.block_m = ints(x, key, kBlockM);
      else if (x.key == "block_n") t.block_n = ints(x, key, kBlockN);
      else if (x.key == "warps") t.warps = ints(x, key, kWarps);
      else if (x.key == "stages") t.stages = ints(x, key, kStages);
      else if (x.key == "mma") {
        static const std::string kMmas = "one of sync | wgmma | wgmma-pipe | wgmma-pp | wgmma-pipe-pp | wgmma-red";
        t.mma = list<Mma>(x, key, kMmas,
            [&](const YAML::Node& n) { return enum_item<Mma>(n, key, kMmas, parse_mma); }, nullptr);
      } else if (x.key == "loader") {
        static const std::string kLoaders = "one of cp_async | tma";
        t.loader = list<Loader>(x, key, kLoaders,
            [&](const YAML::Node& n) { return enum_item<Loader>(n, key, kLoaders, parse_loader); }, nullptr);
      } else t.split_kv = ints(x, key, op == Op::decode ? kSplitDecode : kSplitPrefill);
    }
    return t;
  }

  KernelSpec document(const YAML::Node& root, const std::string& default_name) const {
    static const char* kSpecKeys = "op, variant, dtype, head_dim, arch, tile, ...";
    if (!root.IsMap()) {
      bad(root.Mark(), "(top level)", describe(root),
          fmt::format("a mapping of spec keys ({})", kSpecKeys));
    }
    auto es = entries(root, "", {"name", "op", "variant", "dtype", "head_dim", "gqa", "causal",
                                 "window", "qk_scale", "arch", "tile"});
    static const std::string kOps = "one of decode | prefill | backward (one op per spec)";
    static const std::string kFamilies = "one of parallax | softmax | parallax_uncentered";
    static const std::string kDTypes = "one of bf16 | fp16";
    static const std::string kArchs = "one of sm_80 | sm_90a";

    KernelSpec s;
    s.source = file_;
    s.name = default_name;
    const Entry* op = find(es, "op");
    if (!op) missing(root, "op", kOps);
    if (!op->vnode.IsScalar()) bad(mark_of(*op), "op", describe(op->vnode), kOps);
    s.op = enum_item<Op>(op->vnode, "op", kOps, parse_op);
    s.gqa = {1};
    s.causal = {true};
    s.windows = {-1};
    bool seen_variant = false, seen_dtype = false, seen_hd = false, seen_arch = false;
    for (const auto& e : es) {
      const std::string& k = e.key;
      if (k == "name") s.name = name(e);
      else if (k == "op") continue;
      else if (k == "variant") {
        s.families = list<Family>(e, k, kFamilies,
            [&](const YAML::Node& n) { return enum_item<Family>(n, k, kFamilies, parse_family); }, nullptr);
        seen_variant = true;
      } else if (k == "dtype") {
        s.dtypes = list<DType>(e, k, kDTypes,
            [&](const YAML::Node& n) { return enum_item<DType>(n, k, kDTypes, parse_dtype); }, nullptr);
        seen_dtype = true;
      } else if (k == "arch") {
        s.archs = list<Arch>(e, k, kArchs,
            [&](const YAML::Node& n) { return enum_item<Arch>(n, k, kArchs, parse_arch); }, nullptr);
        seen_arch = true;
      } else if (k == "causal") {
        s.causal = list<bool>(e, k, "true or false",
            [&](const YAML::Node& n) { return bool_item(n, k); }, nullptr);
      } else if (k == "head_dim") {
        s.head_dims = ints(e, k, kHeadDim);
        seen_hd = true;
      } else if (k == "gqa") s.gqa = ints(e, k, kGqa);
      else if (k == "window") s.windows = ints(e, k, kWindow);
      else if (k == "qk_scale") s.qk_scale = qk_scale(e);
    }
    if (!seen_variant) missing(root, "variant", kFamilies);
    if (!seen_dtype) missing(root, "dtype", kDTypes);
    if (!seen_hd) missing(root, "head_dim", kHeadDim.expected);
    if (!seen_arch) missing(root, "arch", kArchs);
    const Entry* tile_entry = find(es, "tile");
    s.tile = tile(tile_entry, s.op);

    // Refuse specs whose compiled cross product is absurd before anyone expands it.
    double combos = 1;
    for (double n : {s.families.size(), s.dtypes.size(), s.head_dims.size(), s.causal.size(),
                     s.window_flags().size(), s.archs.size(), s.tile.block_m.size(),
                     s.tile.block_n.size(), s.tile.warps.size(), s.tile.stages.size(),
                     s.tile.split_kv.size(), s.tile.mma.size(), s.tile.loader.size()}) {
      combos *= n;
    }
    if (combos > static_cast<double>(kSpecMaxCombinations)) {
      fail(tile_entry ? tile_entry->knode.Mark() : root.Mark(),
           fmt::format("the spec expands to {:.0f} combinations, expected at most {} (split it into "
                       "several specs)",
                       combos, kSpecMaxCombinations));
    }
    return s;
  }

  KernelSpec parse(std::string_view text, const std::string& default_name) const {
    if (text.size() > kSpecMaxBytes) {
      fail(YAML::Mark(), fmt::format("got a spec of {} bytes, expected at most {} bytes", text.size(),
                                     kSpecMaxBytes));
    }
    static const char* kEmpty =
        "got an empty spec, expected a mapping with at least op, variant, dtype, head_dim, arch";
    try {
      const std::string owned(text);
      {
        // Count the documents with a cheap event pass first. yaml-cpp 0.7 never consumes a
        // stray ',' at document level: every HandleNextDocument() returns another empty
        // document at the same token, so YAML::LoadAll would allocate until killed. Stop at
        // the third document; a mark that repeats is such a stuck token.
        std::istringstream in(owned);
        YAML::Parser parser(in);
        DocCounter docs;
        while (docs.count < 3 && parser.HandleNextDocument(docs)) {
        }
        if (docs.count == 0) fail(YAML::Mark(), kEmpty);
        if (docs.count >= 2) {
          const YAML::Mark* stuck = nullptr;
          if (docs.starts[0].pos == docs.starts[1].pos) stuck = &docs.starts[1];
          else if (docs.count == 3 && docs.starts[1].pos == docs.starts[2].pos) stuck = &docs.starts[2];
          if (stuck) {
            std::string_view at = stuck->pos >= 0 && static_cast<size_t>(stuck->pos) < owned.size()
                                      ? std::string_view(owned).substr(static_cast<size_t>(stuck->pos), 1)
                                      : std::string_view("end of input");
            fail(*stuck, fmt::format("YAML syntax error: unexpected '{}' outside any list or mapping", printable(at)));
          }
          fail(docs.starts[1], "got a second YAML document, expected one document (one kernel family) per spec");
        }
      }
      YAML::Node root = YAML::Load(owned);
      if (root.IsNull()) fail(root.Mark(), kEmpty);
      return document(root, default_name);
    } catch (const SpecError&) {
      throw;
    } catch (const YAML::DeepRecursion& e) {
      fail(e.mark, fmt::format("YAML nesting too deep ({} levels), expected a spec nested a few levels deep",
                               e.depth()));
    } catch (const YAML::Exception& e) {
      fail(e.mark, fmt::format("YAML syntax error: {}", printable(e.msg, 160)));
    } catch (const std::exception& e) {
      fail(YAML::Mark(), fmt::format("cannot read the YAML: {}", printable(e.what(), 160)));
    } catch (...) {
      fail(YAML::Mark(), "cannot read the YAML: unknown error");
    }
  }

 private:
  std::string file_;
};

std::string stem_of(const std::string& display_name) {
  std::string stem;
  try {
    stem = std::filesystem::path(display_name).stem().string();
  } catch (...) {
  }
  return stem.empty() ? std::string("spec") : stem;
}

}  // namespace

KernelSpec parse_spec(std::string_view text, std::string display_name) {
  Parser p(display_name);
  return p.parse(text, stem_of(display_name));
}

KernelSpec load_spec(const std::filesystem::path& path) {
  std::string shown = one_line(path.string());
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    throw SpecError(fmt::format("{}: cannot open the spec file: {}", shown,
                                ec ? ec.message() : std::string("no such file")));
  }
  if (std::filesystem::is_directory(st)) {
    throw SpecError(fmt::format("{}: cannot open the spec file: it is a directory", shown));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw SpecError(fmt::format("{}: cannot open the spec file: {}", shown, std::strerror(errno)));
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kSpecMaxBytes) {
      throw SpecError(fmt::format("{}:1:1: got a spec file larger than {} bytes, expected a small YAML file",
                                  shown, kSpecMaxBytes));
    }
  }
  if (in.bad()) {
    throw SpecError(fmt::format("{}: cannot read the spec file: {}", shown, std::strerror(errno)));
  }
  return parse_spec(text, path.string());
}

}  // namespace plx
