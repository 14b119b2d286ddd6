// The worked examples of autotune/heuristics.hpp hold.
#include <catch2/catch.hpp>

#include "autotune/heuristics.hpp"

using namespace plx;
using namespace plx::heuristics;

TEST_CASE("decode split counts follow the wave model", "[heuristics]") {
  CHECK(decode_splits(8, 256, 132) == 33);
  CHECK(decode_splits(8, 64, 132) == 32);
  CHECK(decode_splits(64, 256, 132) == 4);
  CHECK(decode_splits(256, 256, 132) == 1);
  CHECK(decode_splits(256, 256, 132, 1) == 1);  // 1 CTA per SM: wave 132, ctas >= wave
  CHECK(ctas_per_sm_by_smem(102400, Arch::sm90a) == 2);
  CHECK(ctas_per_sm_by_smem(136192, Arch::sm90a) == 1);
  CHECK(decode_splits(512, 256, 132) == 1);
  CHECK(decode_splits(8, 3, 132) == 1);  // too few tiles to split
  for (int ctas : {1, 3, 17, 100})
    for (int tiles : {4, 9, 100, 1000}) {
      const int s = decode_splits(ctas, tiles, 132);
      CHECK(s >= 1);
      CHECK(s <= tiles / 2);
    }
}

TEST_CASE("op and block_m choices", "[heuristics]") {
  CHECK(choose_op(1) == Op::decode);
  CHECK(choose_op(16) == Op::decode);
  CHECK(choose_op(17) == Op::prefill);
  CHECK(decode_block_m(Family::parallax, 4) == 8);
  CHECK(decode_block_m(Family::parallax, 16) == 16);
  CHECK(decode_block_m(Family::softmax, 8) == 16);
  CHECK(decode_block_m(Family::parallax_uncentered, 40) == 16);
  CHECK(default_tile(Op::prefill, Family::parallax, 0).block_m == 64);
  CHECK(default_tile(Op::prefill, Family::softmax, 0).block_m == 128);
}
