#include "autotune/choose_variant.hpp"

#include <fmt/format.h>

#include "autotune/bucket_key.hpp"
#include "autotune/heuristics.hpp"
#include "runtime/backward.hpp"
#include "runtime/launch.hpp"

namespace plx {

namespace {

// The recorded winner for `bucket` if it can serve the call: a variant name, this arch,
// the op the call needs, and `fits` (legality included) does not throw. Otherwise nullopt,
// with the reason in *rejected.
template <class Fits>
std::optional<Variant> usable_winner(const TuningDb& db, const std::string& bucket, Arch arch, Op need, Fits fits,
                                     std::string* rejected) {
  const auto e = db.lookup(bucket);
  if (!e) return std::nullopt;
  auto refuse = [&](const std::string& why) -> std::optional<Variant> {
    if (rejected) *rejected = fmt::format("tuned winner {} for {}: {}", e->winner, e->bucket, why);
    return std::nullopt;
  };
  const auto v = parse_variant_name(e->winner);
  if (!v) return refuse("not a variant name");
  if (v->arch != arch) return refuse(fmt::format("targets {}, not {}", to_string(v->arch), to_string(arch)));
  if (v->op != need) return refuse(fmt::format("is a {} kernel, the call needs {}", to_string(v->op), to_string(need)));
  try {
    fits(*v);  // also why_illegal
  } catch (const Error& ex) {
    return refuse(ex.what());
  }
  return v;
}

}  // namespace

std::optional<Variant> tuned_variant(const TuningDb& db, const AttentionArgs& a, Arch arch, std::string* rejected) {
  return usable_winner(db, tune::bucket_key(a), arch, heuristics::choose_op(a.q_len),
                       [&](const Variant& v) { check_fits(v, a); }, rejected);
}

VariantChoice choose_variant(const TuningDb& db, const AttentionArgs& a, Arch arch) {
  VariantChoice c;
  if (auto v = tuned_variant(db, a, arch, &c.rejected)) {
    c.variant = *v;
    c.tuned = true;
    return c;
  }
  c.variant = default_variant(a, arch);
  return c;
}

Variant untuned_backward_variant(const AttentionArgs& a, Arch arch) {
  return arch == Arch::sm90a ? wgmma_backward_variant(a) : default_backward_variant(a, arch);
}

std::optional<Variant> tuned_backward_variant(const TuningDb& db, const AttentionArgs& a, Arch arch,
                                              std::string* rejected) {
  return usable_winner(db, tune::bucket_of_backward(a).key(), arch, Op::backward,
                       [&](const Variant& v) { check_fits_backward(v, a); }, rejected);
}

VariantChoice choose_backward_variant(const TuningDb& db, const AttentionArgs& a, Arch arch) {
  VariantChoice c;
  if (auto v = tuned_backward_variant(db, a, arch, &c.rejected)) {
    c.variant = *v;
    c.tuned = true;
    return c;
  }
  c.variant = untuned_backward_variant(a, arch);
  return c;
}

}  // namespace plx
