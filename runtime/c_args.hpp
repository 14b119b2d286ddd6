// The C API's argument struct (parallax.h) as the C++ engine's AttentionArgs, reading only
// the fields the caller's struct_size covers, so that a caller built against an older
// parallax.h (a smaller struct) never has bytes past its struct read. Used by
// runtime/export/c_api.cpp; in plx_core so that test_c_api checks it without a GPU.
#pragma once
#include <cstddef>

#include "parallax/parallax.h"
#include "parallax/parallax.hpp"

namespace plx::cabi {

// struct_size of each ABI's plx_attention_args: the end of its last field.
constexpr std::size_t kAbi1Size = offsetof(plx_attention_args, block_table);  // the minimum
constexpr std::size_t kAbi2Size = offsetof(plx_attention_args, max_pages) + sizeof(int);
constexpr std::size_t kAbi3Size = offsetof(plx_attention_args, barv) + sizeof(void*);
constexpr std::size_t kAbi4Size = offsetof(plx_attention_args, cu_seqlens_k) + sizeof(void*);

// The caller must have checked struct_size >= kAbi1Size. Fields past struct_size keep the
// AttentionArgs defaults (ABI 3: no varlen; ABI 2: also no statistics; ABI 1: no paging).
AttentionArgs from_c_args(const plx_attention_args& a);

}  // namespace plx::cabi
