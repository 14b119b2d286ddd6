#include "generator/variant.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <vector>

namespace plx {

std::string_view to_string(Op v) {
  switch (v) {
    case Op::decode: return "decode";
    case Op::prefill: return "prefill";
    case Op::backward: return "backward";
  }
  return "?";
}
std::string_view to_string(Family v) {
  switch (v) {
    case Family::softmax: return "softmax";
    case Family::parallax: return "parallax";
    case Family::parallax_uncentered: return "parallax_uncentered";
  }
  return "?";
}
std::string_view to_string(DType v) { return v == DType::bf16 ? "bf16" : "fp16"; }
std::string_view to_string(Arch v) { return v == Arch::sm80 ? "sm_80" : "sm_90a"; }
std::string_view to_string(Mma v) {
  switch (v) {
    case Mma::sync: return "sync";
    case Mma::wgmma: return "wgmma";
    case Mma::wgmma_pipe: return "wgmma-pipe";
    case Mma::wgmma_pp: return "wgmma-pp";
    case Mma::wgmma_pipe_pp: return "wgmma-pipe-pp";
    case Mma::wgmma_red: return "wgmma-red";
  }
  return "?";
}

std::string_view to_string(Loader v) { return v == Loader::tma ? "tma" : "cp_async"; }

std::optional<Op> parse_op(std::string_view s) {
  if (s == "decode") return Op::decode;
  if (s == "prefill") return Op::prefill;
  if (s == "backward") return Op::backward;
  return std::nullopt;
}
std::optional<Family> parse_family(std::string_view s) {
  if (s == "softmax") return Family::softmax;
  if (s == "parallax") return Family::parallax;
  if (s == "parallax_uncentered" || s == "parallax-uncentered") return Family::parallax_uncentered;
  return std::nullopt;
}
std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "fp16" || s == "float16" || s == "half") return DType::fp16;
  return std::nullopt;
}
std::optional<Arch> parse_arch(std::string_view s) {
  if (s == "sm_80" || s == "sm80") return Arch::sm80;
  if (s == "sm_90a" || s == "sm90a") return Arch::sm90a;
  return std::nullopt;
}
std::optional<Mma> parse_mma(std::string_view s) {
  for (Mma m : {Mma::sync, Mma::wgmma, Mma::wgmma_pipe, Mma::wgmma_pp, Mma::wgmma_pipe_pp, Mma::wgmma_red}) {
    const std::string_view name = to_string(m);
    if (s.size() == name.size() && std::equal(s.begin(), s.end(), name.begin(), [](char a, char b) {
          return a == b || (a == '_' && b == '-');
        }))
      return m;
  }
  return std::nullopt;
}

std::optional<Loader> parse_loader(std::string_view s) {
  if (s == "cp_async" || s == "cp-async") return Loader::cp_async;
  if (s == "tma") return Loader::tma;
  return std::nullopt;
}

namespace {
// The family is the only multi-word field; names use '-' inside it so '_' splits fields.
std::string family_token(Family f) {
  std::string s(to_string(f));
  for (auto& c : s) if (c == '_') c = '-';
  return s;
}
std::string arch_token(Arch a) { return a == Arch::sm80 ? "sm80" : "sm90a"; }

std::optional<int> int_after(std::string_view tok, std::string_view prefix) {
  if (tok.substr(0, prefix.size()) != prefix) return std::nullopt;
  int v = 0;
  auto body = tok.substr(prefix.size());
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (ec != std::errc() || p != body.data() + body.size() || body.empty()) return std::nullopt;
  return v;
}
}  // namespace

std::string Variant::name() const {
  std::string mask = causal ? "causal" : "full";
  if (window) mask += "-win";
  std::string split = tile.split_kv == 0 ? "auto" : std::to_string(tile.split_kv);
  const std::string mma = tile.mma == Mma::sync ? "" : std::string(to_string(tile.mma)) + "_";
  const std::string loader = tile.loader == Loader::cp_async ? "" : std::string(to_string(tile.loader)) + "_";
  return fmt::format("plx_{}_{}_{}_d{}_{}_m{}_n{}_w{}_s{}_k{}_{}{}{}", to_string(op),
                     family_token(family), to_string(dtype), head_dim, mask, tile.block_m,
                     tile.block_n, tile.warps, tile.stages, split, mma, loader, arch_token(arch));
}

std::optional<Variant> parse_variant_name(std::string_view name) {
  std::vector<std::string_view> t;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('_', start);
    if (end == std::string_view::npos) end = name.size();
    t.push_back(name.substr(start, end - start));
    start = end + 1;
  }
  if (t.size() < 12 || t.size() > 14 || t[0] != "plx") return std::nullopt;
  Variant v;
  // Optional fields between the split and the arch, in this order and only when not the
  // default (one name per variant): the mma family, then the loader.
  if (t.size() > 12 && t[t.size() - 2] == "tma") {
    v.tile.loader = Loader::tma;
    t.erase(t.end() - 2);
  }
  if (t.size() == 13) {  // the mma field, present only for non-default instruction families
    auto mma = parse_mma(t[11]);
    if (!mma || *mma == Mma::sync) return std::nullopt;  // sync names have no field: one name per variant
    v.tile.mma = *mma;
    t.erase(t.begin() + 11);
  }
  if (t.size() != 12) return std::nullopt;
  auto op = parse_op(t[1]);
  auto fam = parse_family(t[2]);
  auto dt = parse_dtype(t[3]);
  auto d = int_after(t[4], "d");
  auto bm = int_after(t[6], "m");
  auto bn = int_after(t[7], "n");
  auto w = int_after(t[8], "w");
  auto s = int_after(t[9], "s");
  auto arch = parse_arch(t[11]);
  if (!op || !fam || !dt || !d || !bm || !bn || !w || !s || !arch) return std::nullopt;
  std::string_view mask = t[5];
  if (mask == "causal" || mask == "causal-win") v.causal = true;
  else if (mask == "full" || mask == "full-win") v.causal = false;
  else return std::nullopt;
  v.window = mask.ends_with("-win");
  if (t[10] == "kauto") v.tile.split_kv = 0;
  else if (auto k = int_after(t[10], "k"); k && *k > 0) v.tile.split_kv = *k;
  else return std::nullopt;
  v.op = *op; v.family = *fam; v.dtype = *dt; v.head_dim = *d; v.arch = *arch;
  v.tile.block_m = *bm; v.tile.block_n = *bn; v.tile.warps = *w; v.tile.stages = *s;
  return v;
}

}  // namespace plx
