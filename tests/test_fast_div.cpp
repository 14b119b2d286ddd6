// plx::FastDiv (templates/plx/fast_div.cuh), the Hopper prefill's work-item decode, against
// the CPU's `/` on the edges that break multiply-shift schemes: powers of two and their
// neighbours, 1, the largest int, and numerators near multiples of the divisor.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "plx/fast_div.cuh"

TEST_CASE("FastDiv equals integer division on [0, 2^31)", "[fast_div]") {
  std::vector<int> divisors;
  for (int d = 1; d <= 300; ++d) divisors.push_back(d);
  for (int s = 1; s <= 30; ++s) {
    const long long p = 1ll << s;
    for (long long d : {p - 1, p, p + 1}) divisors.push_back(int(d));
  }
  divisors.push_back(2147483647);
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) divisors.push_back(int(rng() % 2147483647u) + 1);

  for (const int d : divisors) {
    const plx::FastDiv f(d);
    std::vector<long long> ns = {0, 1, d - 1, d, d + 1ll, 2147483647, 2147483646};
    for (long long m : {2ll, 3ll, 1000ll, 2147483647ll / d}) {
      for (long long delta : {-1ll, 0ll, 1ll}) ns.push_back(m * d + delta);
    }
    for (int j = 0; j < 64; ++j) ns.push_back(rng() % 2147483648u);
    for (const long long n : ns) {
      if (n < 0 || n > 2147483647) continue;
      INFO("n " << n << " d " << d);
      REQUIRE(f.div(int(n)) == int(n / d));
    }
  }
}
