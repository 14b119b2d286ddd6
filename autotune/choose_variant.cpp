#include "autotune/choose_variant.hpp"

#include <fmt/format.h>

#include "autotune/bucket_key.hpp"
#include "autotune/heuristics.hpp"
#include "runtime/backward.hpp"
#include "runtime/launch.hpp"

namespace plx {

std::optional<Variant> tuned_variant(const TuningDb& db, const AttentionArgs& a, Arch arch, std::string* rejected) {
  const auto e = db.lookup(tune::bucket_key(a));
  if (!e) return std::nullopt;
  auto refuse = [&](const std::string& why) -> std::optional<Variant> {
    if (rejected) *rejected = fmt::format("tuned winner {} for {}: {}", e->winner, e->bucket, why);
    return std::nullopt;
  };
  const auto v = parse_variant_name(e->winner);
  if (!v) return refuse("not a variant name");
  if (v->arch != arch) return refuse(fmt::format("targets {}, not {}", to_string(v->arch), to_string(arch)));
  if (v->op != heuristics::choose_op(a.q_len))
    return refuse(fmt::format("is a {} kernel, the call needs {}", to_string(v->op),
                              to_string(heuristics::choose_op(a.q_len))));
  try {
    check_fits(*v, a);  // also why_illegal
  } catch (const Error& ex) {
    return refuse(ex.what());
  }
  return v;
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
  const auto e = db.lookup(tune::bucket_of_backward(a).key());
  if (!e) return std::nullopt;
  auto refuse = [&](const std::string& why) -> std::optional<Variant> {
    if (rejected) *rejected = fmt::format("tuned winner {} for {}: {}", e->winner, e->bucket, why);
    return std::nullopt;
  };
  const auto v = parse_variant_name(e->winner);
  if (!v) return refuse("not a variant name");
  if (v->arch != arch) return refuse(fmt::format("targets {}, not {}", to_string(v->arch), to_string(arch)));
  if (v->op != Op::backward) return refuse(fmt::format("is a {} kernel, the call needs backward", to_string(v->op)));
  try {
    check_fits_backward(*v, a);  // also why_illegal
  } catch (const Error& ex) {
    return refuse(ex.what());
  }
  return v;
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
