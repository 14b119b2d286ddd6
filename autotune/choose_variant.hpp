// The engine's choice for a call without a named variant: the tuning database's winner
// for the call's bucket when it is usable here, else the model's choice (default_variant).
// A winner is usable when its name parses, it targets this arch and the call's op, is
// legal (why_illegal) and serves the arguments (check_fits): a database edited by hand or
// written by another version can make the engine slower, never wrong. Pure: no GPU.
#pragma once
#include <optional>
#include <string>

#include "autotune/tuning_db.hpp"
#include "generator/variant.hpp"
#include "parallax/parallax.hpp"

namespace plx {

struct VariantChoice {
  Variant variant;
  bool tuned = false;    // from the database
  std::string rejected;  // the database had a winner that was not usable: why
};

// The database's usable winner for a's bucket, or nullopt (with the reason in *rejected
// when there was a winner but it was refused). `a` must be validated.
std::optional<Variant> tuned_variant(const TuningDb& db, const AttentionArgs& a, Arch arch,
                                     std::string* rejected = nullptr);

// tuned_variant, else default_variant(a, arch).
VariantChoice choose_variant(const TuningDb& db, const AttentionArgs& a, Arch arch);

// ---- backward (Engine::attention_backward without a variant name) ---------------------

// The backward the engine runs untuned: the wgmma kernel on sm_90a
// (wgmma_backward_variant), the mma.sync one elsewhere (default_backward_variant). The
// tuner races it in every backward bucket, as default_variant in the forward's.
Variant untuned_backward_variant(const AttentionArgs& a, Arch arch);

// The database's usable backward winner for a's bucket (bucket_of_backward), by the
// forward's rules: parses, targets `arch`, is a backward variant, legal and serving `a`
// (check_fits_backward). nullopt (with *rejected when a winner was refused) otherwise.
std::optional<Variant> tuned_backward_variant(const TuningDb& db, const AttentionArgs& a, Arch arch,
                                              std::string* rejected = nullptr);

// tuned_backward_variant, else untuned_backward_variant.
VariantChoice choose_backward_variant(const TuningDb& db, const AttentionArgs& a, Arch arch);

}  // namespace plx
