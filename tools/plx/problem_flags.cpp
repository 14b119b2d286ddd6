#include "problem_flags.hpp"

#include <fmt/format.h>

#include <charconv>

#include "autotune/heuristics.hpp"

namespace plx::cli {

std::vector<Option> problem_options() {
  return {{"op", true},      {"family", true}, {"dtype", true},   {"head-dim", true}, {"d", true},
          {"mask", true},    {"window", true}, {"batch", true},   {"q-len", true},    {"kv-len", true},
          {"heads-q", true}, {"heads-kv", true}, {"page-size", true}};
}

namespace {

int parse_int(const std::string& command, const std::string& flag, const std::string& text, int lo, int hi) {
  int out = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc() || end != text.data() + text.size() || out < lo || out > hi)
    throw UsageError(fmt::format("{}: --{} wants an integer in {}..{}, got '{}'", command, flag, lo, hi, text));
  return out;
}

std::vector<int> parse_list(const Args& a, const std::string& command, const std::string& flag, int lo, int hi) {
  std::vector<int> out;
  const auto v = a.get(flag);
  if (!v) return out;
  std::size_t i = 0;
  while (i <= v->size()) {
    std::size_t j = v->find(',', i);
    if (j == std::string::npos) j = v->size();
    out.push_back(parse_int(command, flag, v->substr(i, j - i), lo, hi));
    i = j + 1;
  }
  return out;
}

std::optional<int> parse_opt(const Args& a, const std::string& command, const std::string& flag, int lo, int hi) {
  const auto v = a.get(flag);
  if (!v) return std::nullopt;
  return parse_int(command, flag, *v, lo, hi);
}

}  // namespace

bool ProblemFlags::any_shape() const {
  return !batch.empty() || !q_len.empty() || !kv_len.empty() || heads_q || heads_kv || page_size;
}

bool ProblemFlags::matches(Family f, DType dt, int d, bool is_causal, bool has_window) const {
  if (family && *family != f) return false;
  if (dtype && *dtype != dt) return false;
  if (head_dim && *head_dim != d) return false;
  if (causal && *causal != is_causal) return false;
  if (window && (*window >= 0) != has_window) return false;
  return true;
}

std::vector<AttentionArgs> ProblemFlags::expand(Op o) const {
  AttentionArgs base;
  base.family = family.value_or(Family::parallax);
  base.dtype = dtype.value_or(DType::bf16);
  base.head_dim = head_dim.value_or(128);
  base.causal = causal.value_or(true);
  base.window_left = window.value_or(-1);
  base.heads_q = heads_q.value_or(32);
  base.heads_kv = heads_kv.value_or(8);
  base.page_size = page_size.value_or(0);
  const std::vector<int> bs = batch.empty() ? std::vector<int>{1} : batch;
  const std::vector<int> kvs = kv_len.empty() ? std::vector<int>{4096} : kv_len;
  std::vector<AttentionArgs> out;
  for (int b : bs)
    for (int kv : kvs) {
      std::vector<int> qs = q_len;
      if (qs.empty()) qs = {o == Op::decode ? 1 : kv};
      for (int q : qs) {
        AttentionArgs a = base;
        a.batch = b;
        a.kv_len = kv;
        a.q_len = q;
        if (a.page_size > 0) a.max_pages = (kv + a.page_size - 1) / a.page_size;
        out.push_back(a);
      }
    }
  return out;
}

ProblemFlags parse_problem(const Args& a, const std::string& command) {
  ProblemFlags f;
  if (auto v = a.get("op")) {
    f.op = parse_op(*v);
    if (!f.op) throw UsageError(fmt::format("{}: --op wants decode or prefill, got '{}'", command, *v));
  }
  if (auto v = a.get("family")) {
    f.family = parse_family(*v);
    if (!f.family)
      throw UsageError(
          fmt::format("{}: --family wants parallax, softmax or parallax_uncentered, got '{}'", command, *v));
  }
  if (auto v = a.get("dtype")) {
    f.dtype = parse_dtype(*v);
    if (!f.dtype) throw UsageError(fmt::format("{}: --dtype wants bf16 or fp16, got '{}'", command, *v));
  }
  if (a.has("head-dim") && a.has("d")) throw UsageError(fmt::format("{}: give --head-dim or --d, not both", command));
  f.head_dim = parse_opt(a, command, a.has("d") ? "d" : "head-dim", 1, 1024);
  if (auto v = a.get("mask")) {
    if (*v != "causal" && *v != "full")
      throw UsageError(fmt::format("{}: --mask wants causal or full, got '{}'", command, *v));
    f.causal = *v == "causal";
  }
  f.window = parse_opt(a, command, "window", -1, 1 << 30);
  f.heads_q = parse_opt(a, command, "heads-q", 1, 1 << 16);
  f.heads_kv = parse_opt(a, command, "heads-kv", 1, 1 << 16);
  f.page_size = parse_opt(a, command, "page-size", 0, 1 << 16);
  f.batch = parse_list(a, command, "batch", 1, 1 << 20);
  f.q_len = parse_list(a, command, "q-len", 1, 1 << 30);
  f.kv_len = parse_list(a, command, "kv-len", 1, 1 << 30);
  return f;
}

std::string problem_flags(const AttentionArgs& a) {
  std::string s = fmt::format("--family {} --dtype {} --head-dim {} --mask {}", to_string(a.family),
                              to_string(a.dtype), a.head_dim, a.causal ? "causal" : "full");
  if (a.window_left >= 0) s += fmt::format(" --window {}", a.window_left);
  s += fmt::format(" --batch {} --q-len {} --kv-len {} --heads-q {} --heads-kv {}", a.batch, a.q_len, a.kv_len,
                   a.heads_q, a.heads_kv);
  if (a.page_size > 0) s += fmt::format(" --page-size {}", a.page_size);
  return s;
}

}  // namespace plx::cli
