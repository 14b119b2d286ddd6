// Host-side bf16 / fp16 bit conversions. Tests round their double inputs through these
// before upload, so the CPU oracle sees exactly the values the GPU reads; that needs
// round-to-nearest-even and correct NaN/Inf/subnormal handling, not a truncating cast.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace plx::half {

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  // A NaN whose payload sits in the low 16 bits would round to Inf: force a quiet NaN.
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);  // RNE; a carry into the exponent correctly gives Inf
  return std::uint16_t(u >> 16);
}

inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(std::uint32_t(h) << 16);
}

inline std::uint16_t float_to_fp16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return std::uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x47800000u) return std::uint16_t(sign | 0x7c00u);  // >= 2^16 (or Inf): Inf
  if (a >= 0x38800000u) {  // normal in fp16: rebias 127 -> 15, then RNE on the 13 dropped bits
    std::uint32_t t = a - (112u << 23);
    t += 0xfffu + ((t >> 13) & 1u);  // a carry past 65504 lands exactly on 0x7c00 (Inf)
    return std::uint16_t(sign | (t >> 13));
  }
  if (a <= 0x33000000u) return sign;  // <= 2^-25: half of the smallest subnormal ties to 0
  // Subnormal: count units of 2^-24. value = mant * 2^(e-150), so units = mant >> (126-e).
  const int e = int(a >> 23);
  const std::uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const int shift = 126 - e;  // 14..24
  const std::uint32_t rem = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
  std::uint32_t res = mant >> shift;
  if (rem > halfway || (rem == halfway && (res & 1u))) ++res;  // may reach 0x400: smallest normal
  return std::uint16_t(sign | res);
}

inline float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float mag = std::ldexp(float(m), -24);  // exact: m < 2^10
    return sign ? -mag : mag;
  }
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

// The value a double takes after the same double -> float -> 16-bit path the upload uses
// (two roundings, deliberately: matching the GPU's bits matters, not the closest value).
inline double round_bf16(double x) { return bf16_to_float(float_to_bf16(float(x))); }
inline double round_fp16(double x) { return fp16_to_float(float_to_fp16(float(x))); }
inline double round_to(bool is_bf16, double x) { return is_bf16 ? round_bf16(x) : round_fp16(x); }

}  // namespace plx::half
