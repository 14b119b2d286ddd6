// The worked examples of autotune/heuristics.hpp hold.
#include <catch2/catch.hpp>

#include "autotune/heuristics.hpp"

using namespace plx;
using namespace plx::heuristics;

TEST_CASE("decode split counts follow the per-SM bandwidth model", "[heuristics]") {
  CHECK(decode_splits(8, 64, 132) == 16);
  CHECK(decode_splits(8, 2048, 132) == 16);
  CHECK(decode_splits(64, 128, 132) == 2);
  CHECK(decode_splits(256, 256, 132) == 1);
  CHECK(decode_splits(512, 256, 132) == 1);
  CHECK(decode_split_cost(8, 64, 132, 33) > decode_split_cost(8, 64, 132, 16));
  CHECK(decode_splits(8, 256, 78) == 9);  // fewer SMs (an H100 PCIe-like 78): fewer splits
  // d64: 16 KiB tiles, 2 in flight per CTA, 4 CTAs per SM: two CTAs per SM beat one
  CHECK(decode_splits(32, 128, 132, 32768, 4) == 8);
  CHECK(decode_splits(256, 64, 132, 32768, 4) == 1);
  CHECK(ctas_per_sm_by_smem(102400, Arch::sm90a) == 2);
  CHECK(ctas_per_sm_by_smem(136192, Arch::sm90a) == 1);
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
  CHECK(default_tile(Op::prefill, Family::parallax, 0).mma == Mma::sync);
  const Tile hopper = default_tile(Op::prefill, Family::parallax, 0, /*wgmma_prefill=*/true);
  CHECK(hopper.mma == Mma::wgmma_pipe);  // head_dim 128: two consumers, pipelined, 3 stages (run 50)
  CHECK(hopper.stages == 3);
  CHECK(hopper.warps == 12);
  CHECK(hopper.block_m == 64);
  const Tile hopper_sm = default_tile(Op::prefill, Family::softmax, 0, true);
  CHECK(hopper_sm.mma == Mma::wgmma_pipe_pp);  // softmax d 128: pipelined, with turns, 3 stages
  CHECK(hopper_sm.stages == 3);
  const Tile d64 = default_tile(Op::prefill, Family::softmax, 0, true, 64);
  CHECK(d64.mma == Mma::wgmma);  // three consumers, no turns
  CHECK(d64.warps == 16);
  CHECK(d64.block_m == 192);
  CHECK(d64.stages == 2);
  CHECK(default_tile(Op::decode, Family::parallax, 4, true).mma == Mma::sync);  // decode: mma.sync
}

TEST_CASE("paged decode takes the TMA ring only where it measured faster", "[heuristics]") {
  CHECK(decode_prefers_tma(true, true, 16, 8));    // 1 x 32768 x 32/8: 1.06 vs 1.10 of contiguous
  CHECK(decode_prefers_tma(true, true, 32, 16));
  CHECK(!decode_prefers_tma(true, true, 16, 64));  // 8 x 8192 x 32/8: TMA 1.14, cp.async 1.04
  CHECK(!decode_prefers_tma(true, true, 64, 8));   // one page per tile: cp.async
  CHECK(!decode_prefers_tma(true, false, 16, 8));  // contiguous: cp.async everywhere
  CHECK(!decode_prefers_tma(false, true, 16, 8));  // sm_80 has no TMA
}
