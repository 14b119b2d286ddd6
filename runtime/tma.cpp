#include "runtime/tma.hpp"

#include <fmt/format.h>

#include <cstring>

#include "parallax/errors.hpp"
#include "runtime/driver.hpp"

namespace plx {

static_assert(sizeof(TmaDesc) == sizeof(CUtensorMap) && alignof(TmaDesc) >= alignof(CUtensorMap),
              "templates/plx/tma_desc.cuh must mirror CUtensorMap");
static_assert(sizeof(KvTmaDescs) == 2 * sizeof(CUtensorMap), "K and V maps back to back");

TmaMapShape decode_kv_map_shape(const Variant& v, const AttnParams& p) {
  TmaMapShape s;
  const std::uint64_t d = std::uint64_t(v.head_dim), elem = 2;
  const std::uint64_t row_bytes = std::uint64_t(p.k_stride_t) * elem;  // heads_kv x d x 2
  s.dims[0] = d;
  s.dims[1] = std::uint64_t(p.heads_kv);
  s.strides[0] = std::uint64_t(p.k_stride_h) * elem;
  s.strides[1] = row_bytes;
  s.box[0] = 64;  // one 128-byte swizzle panel; d 128 takes two boxes
  s.box[1] = 1;
  if (p.block_table) {
    const int page = 1 << p.page_shift;
    s.rank = 3;
    s.dims[2] = kTmaPagedSlots;
    s.box[2] = std::uint32_t(page < v.tile.block_n ? page : v.tile.block_n);
  } else {
    s.rank = 4;
    s.dims[2] = std::uint64_t(p.kv_len);
    s.dims[3] = std::uint64_t(p.batch);
    s.strides[2] = std::uint64_t(p.k_stride_b) * elem;
    s.box[2] = std::uint32_t(v.tile.block_n);
    s.box[3] = 1;
  }
  return s;
}

namespace {
TmaDesc encode_one(const Variant& v, const TmaMapShape& s, const void* base, const char* which) {
  const cu::Api& a = cu::api();
  if (!a.cuTensorMapEncodeTiled)
    throw UnsupportedError(fmt::format(
        "variant {} copies K/V with the TMA, but this CUDA driver ({}) has no cuTensorMapEncodeTiled (CUDA 12.0+); "
        "run the cp.async variant {} instead",
        v.name(), a.driver_version, [&] {
          Variant c = v;
          c.tile.loader = Loader::cp_async;
          return c.name();
        }()));
  CUtensorMap map;
  const cuuint32_t ones[5] = {1, 1, 1, 1, 1};
  cuuint64_t dims[5], strides[4];
  cuuint32_t box[5];
  for (int i = 0; i < s.rank; ++i) {
    dims[i] = s.dims[i];
    box[i] = s.box[i];
    if (i + 1 < s.rank) strides[i] = s.strides[i];
  }
  const CUtensorMapDataType type =
      v.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = a.cuTensorMapEncodeTiled(&map, type, cuuint32_t(s.rank), const_cast<void*>(base), dims, strides,
                                              box, ones, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw DriverError(fmt::format("cuTensorMapEncodeTiled refused the {} map of {} (rank {}, dims {} ..., box {} x "
                                  "{}): {}",
                                  which, v.name(), s.rank, s.dims[0], s.box[0], s.box[2], cu::result_name(r)),
                      "cuTensorMapEncodeTiled", static_cast<int>(r));
  TmaDesc out;
  std::memcpy(&out, &map, sizeof map);
  return out;
}
}  // namespace

KvTmaDescs encode_decode_maps(const Variant& v, const AttnParams& p) {
  const TmaMapShape s = decode_kv_map_shape(v, p);
  return {encode_one(v, s, p.k, "K"), encode_one(v, s, p.v, "V")};
}

ForwardLaunchArgs::ForwardLaunchArgs(const Variant& v, AttnParams& p) : ptrs{&p, nullptr} {
  if (v.tile.loader == Loader::tma) {
    maps = encode_decode_maps(v, p);
    ptrs[1] = &maps;
  }
}

}  // namespace plx
