// The GpuIdentity the tuning-database tests file their entries under: the lent H200 with
// this build's template hash.
#pragma once
#include "autotune/tuning_db.hpp"

namespace plx::testing {

inline GpuIdentity h200() {
  GpuIdentity id;
  id.name = "NVIDIA H200";
  id.cc_major = 9;
  id.cc_minor = 0;
  id.sm_count = 132;
  id.driver_version = 13000;
  id.nvrtc_version = "13.0";
  id.template_hash = template_hash();
  return id;
}

}  // namespace plx::testing
