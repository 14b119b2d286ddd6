#include "autotune/measure.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>

#include "generator/variant.hpp"
#include "runtime/compiler.hpp"
#include "runtime/driver.hpp"

namespace plx::measure {

// ---- statistics ------------------------------------------------------------------------

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) throw Error("quantile of an empty sample");
  const double pos = std::clamp(q, 0.0, 1.0) * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}

namespace {
double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return quantile(v, 0.5);
}
double mad_of(const std::vector<double>& v, double med) {
  std::vector<double> dev(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) dev[i] = std::abs(v[i] - med);
  return median_of(std::move(dev));
}
}  // namespace

Stats summarize(std::vector<double> samples) {
  if (samples.empty()) throw Error("statistics of an empty sample");
  std::sort(samples.begin(), samples.end());
  Stats s;
  s.n = int(samples.size());
  s.median = quantile(samples, 0.5);
  s.p10 = quantile(samples, 0.1);
  s.p90 = quantile(samples, 0.9);
  s.min = samples.front();
  s.max = samples.back();
  s.mad = mad_of(samples, s.median);
  return s;
}

Paired compare_paired(const std::vector<double>& a, const std::vector<double>& b, double floor_rel) {
  if (a.empty() || a.size() != b.size())
    throw Error(fmt::format("paired comparison needs equal, non-empty samples (got {} and {})", a.size(), b.size()));
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  Paired p;
  p.diff = median_of(d);
  const double se = 1.2533 * 1.4826 * mad_of(d, p.diff) / std::sqrt(double(d.size()));
  const double fl = floor_rel * median_of(a);
  p.noise = std::max(2.0 * se, fl);
  p.by = 2.0 * se > fl ? NoiseTerm::paired : NoiseTerm::floor;
  p.tied = p.diff <= p.noise;
  return p;
}

const char* to_string(NoiseTerm t) {
  switch (t) {
    case NoiseTerm::floor: return "floor";
    case NoiseTerm::paired: return "paired";
    case NoiseTerm::noise_a: return "noise_a";
    case NoiseTerm::noise_b: return "noise_b";
    case NoiseTerm::repro_a: return "repro_a";
    case NoiseTerm::repro_b: return "repro_b";
  }
  return "?";
}

Paired compare_runs(const RunTime& a, const RunTime& b, double floor_rel) {
  Paired p;
  p.diff = b.us - a.us;
  const double t = std::min(a.us, b.us);
  // The largest term; ties go to the earlier (so without repro_rel, `by` is as before).
  const std::pair<double, NoiseTerm> terms[] = {{floor_rel * t, NoiseTerm::floor},
                                                {a.noise, NoiseTerm::noise_a},
                                                {b.noise, NoiseTerm::noise_b},
                                                {a.repro_rel * t, NoiseTerm::repro_a},
                                                {b.repro_rel * t, NoiseTerm::repro_b}};
  p.noise = terms[0].first;
  p.by = terms[0].second;
  for (const auto& [v, term] : terms)
    if (v > p.noise) {
      p.noise = v;
      p.by = term;
    }
  p.tied = std::abs(p.diff) <= p.noise;
  return p;
}

std::optional<Repro> reproducibility(const std::vector<std::pair<double, double>>& first_repeat) {
  std::vector<double> moves;
  for (const auto& [first, repeat] : first_repeat)
    if (first > 0 && repeat > 0 && std::isfinite(first) && std::isfinite(repeat))
      moves.push_back(std::abs(repeat - first) / first);
  if (moves.empty()) return std::nullopt;
  std::sort(moves.begin(), moves.end());
  Repro r;
  r.n = int(moves.size());
  r.median_rel = quantile(moves, 0.5);
  r.p90_rel = quantile(moves, 0.9);
  r.max_rel = moves.back();
  return r;
}

bool tie_before(const Contender& a, const Contender& b) {
  if (a.model_choice != b.model_choice) return a.model_choice;
  const bool ka = a.registers >= 0, kb = b.registers >= 0;
  if (ka != kb) return ka;
  if (ka && a.registers != b.registers) return a.registers < b.registers;
  return a.name < b.name;
}

Decision decide(const std::vector<Contender>& c, double floor_rel) {
  Decision d;
  d.median.assign(c.size(), 0.0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c[i].samples.empty()) continue;
    d.median[i] = median_of(c[i].samples);
    const bool better = d.fastest < 0 || d.median[i] < d.median[d.fastest] ||
                        (d.median[i] == d.median[d.fastest] && tie_before(c[i], c[d.fastest]));
    if (better) d.fastest = int(i);
  }
  if (d.fastest < 0) return d;
  const Contender& f = c[d.fastest];
  double closest_noise = -1, closest_diff = 0;
  std::vector<double> noise(c.size(), 0.0);
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c[i].samples.empty()) continue;
    if (int(i) == d.fastest) {
      d.tied.push_back(int(i));
      continue;
    }
    const Paired p = compare_paired(f.samples, c[i].samples, floor_rel);
    noise[i] = p.noise;
    if (p.tied) d.tied.push_back(int(i));
    if (closest_noise < 0 || p.diff < closest_diff) {
      closest_diff = p.diff;
      closest_noise = p.noise;
    }
  }
  std::sort(d.tied.begin(), d.tied.end(), [&](int x, int y) { return tie_before(c[x], c[y]); });
  d.winner = d.tied.front();
  if (d.winner != d.fastest)
    d.noise = noise[d.winner];
  else
    d.noise = closest_noise >= 0 ? closest_noise : floor_rel * d.median[d.fastest];
  return d;
}

Rotation rotation_for(std::size_t set_bytes, std::size_t l2_bytes, std::size_t max_bytes, int max_sets) {
  Rotation r;
  if (set_bytes == 0) return r;
  const std::size_t want = (2 * l2_bytes + set_bytes - 1) / set_bytes + 1;
  const std::size_t fit = std::max<std::size_t>(1, max_bytes / set_bytes);
  const std::size_t cap = std::min<std::size_t>(std::size_t(std::max(1, max_sets)), fit);
  r.sets = int(std::min(want, cap));
  r.flush = want > cap;
  return r;
}

std::size_t input_bytes(const AttentionArgs& a) {
  const std::size_t e = 2, d = std::size_t(a.head_dim);
  const std::size_t q = std::size_t(a.batch) * a.q_len * a.heads_q * d * e;
  std::size_t kv_rows = std::size_t(a.batch) * a.kv_len;
  std::size_t table = 0;
  if (a.page_size > 0) {
    const std::size_t pages = (std::size_t(a.kv_len) + a.page_size - 1) / a.page_size;
    kv_rows = std::size_t(a.batch) * pages * a.page_size;
    table = std::size_t(a.batch) * pages * sizeof(int);
  }
  const std::size_t kv = kv_rows * a.heads_kv * d * e;
  return q * (has_probe(a.family) ? 3 : 2) + 2 * kv + table;
}

// ---- GPU harness -----------------------------------------------------------------------

namespace {

// plx_spin holds the stream for `ns` of GPU time (globaltimer), so the host has enqueued
// the events and the timed launch before the GPU reaches them. plx_fill writes values of
// magnitude [1/32, 1) straight as bf16 or fp16 bits (exponent and mantissa from a hash of
// the index), finite in both layouts, so no host round trip of gigabytes is needed.
constexpr const char* kSource = R"(
extern "C" __global__ void plx_spin(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}
extern "C" __global__ void plx_fill16(unsigned short* p, unsigned long long n, unsigned seed, int fp16) {
  const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    unsigned x = (unsigned)i * 0x9E3779B9u ^ seed ^ (unsigned)(i >> 32) * 0x85EBCA6Bu;
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    const unsigned sign = x >> 31, e = ((x >> 24) & 7u) % 5u;
    p[i] = fp16 ? (unsigned short)(sign << 15 | (10u + e) << 10 | (x & 0x3ffu))
                : (unsigned short)(sign << 15 | (122u + e) << 7 | (x & 0x7fu));
  }
}
)";

// One cubin per arch per process: NVRTC takes ~0.2 s, and every harness wants the same.
const CompiledKernel& measure_kernels(const std::string& arch) {
  static std::mutex mu;
  static std::vector<std::pair<std::string, CompiledKernel>> done;
  std::lock_guard lock(mu);
  for (const auto& [a, k] : done)
    if (a == arch) return k;
  CompileRequest req;
  req.source = kSource;
  req.source_name = "plx_measure.cu";
  req.arch = arch;
  req.name_expression = "plx_spin";
  req.display_name = "plx_measure";
  done.emplace_back(arch, compile(req));
  return done.back().second;
}

using clk = std::chrono::steady_clock;
double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

}  // namespace

struct Harness::Impl {
  cu::Stream stream;
  cu::Module module;
  cu::Launchable spin, fill;
  std::size_t l2 = 0;
  bool flush = false;
  cu::Buffer flush_buf;
  std::vector<cu::Event> events;  // pairs: [2i] start, [2i+1] stop

  Impl(const cu::Device& dev)
      : module(measure_kernels(dev.arch_string()).cubin),
        spin(module.function("plx_spin")),
        fill(module.function("plx_fill16")),
        l2(std::size_t(std::max(dev.l2_bytes(), 1 << 20))) {}

  void ensure_events(std::size_t pairs) {
    while (events.size() < 2 * pairs) events.emplace_back();
  }
  void before_timed(CUstream s, std::uint64_t spin_ns, int rep) {
    if (flush) {
      if (flush_buf.size() == 0) flush_buf = cu::Buffer(2 * l2);
      PLX_CU(cu::api().cuMemsetD8Async(flush_buf.ptr(), std::uint8_t(rep), flush_buf.size(), s));
    }
    if (spin_ns > 0) {
      unsigned long long ns = spin_ns;
      void* args[] = {&ns};
      cu::launch(spin, {1, 1, 1}, {1, 1, 1}, 0, s, args);
    }
  }
};

Harness::Harness(const cu::Device& dev) : impl_(std::make_unique<Impl>(dev)) {}
Harness::~Harness() = default;

void* Harness::stream() const { return impl_->stream.handle(); }
std::size_t Harness::l2_bytes() const { return impl_->l2; }
void Harness::set_flush(bool on) { impl_->flush = on; }

std::vector<double> Harness::time(const Call& call, const TimingOptions& o) {
  Impl& m = *impl_;
  const CUstream s = m.stream.handle();
  int rep = 0;
  // Warm-up one call at a time, synchronised, so its wall clock is GPU time, not enqueue.
  const auto w0 = clk::now();
  while (rep < o.warmup_min || seconds_since(w0) < o.warmup_s) {
    call(rep++, s);
    m.stream.synchronize();
  }
  std::vector<double> us;
  const auto t0 = clk::now();
  const int max_reps = std::max(o.max_reps, o.min_reps);
  int batch = std::clamp(o.min_reps, 1, 8);
  while (int(us.size()) < max_reps) {
    const int n = std::min(batch, max_reps - int(us.size()));
    m.ensure_events(std::size_t(n));
    for (int j = 0; j < n; ++j) {
      m.before_timed(s, o.spin_ns, rep);
      m.events[2 * j].record(s);
      call(rep++, s);
      m.events[2 * j + 1].record(s);
    }
    for (int j = 0; j < n; ++j) us.push_back(double(cu::elapsed_ms(m.events[2 * j], m.events[2 * j + 1])) * 1e3);
    if (int(us.size()) >= o.min_reps && seconds_since(t0) >= o.budget_s) break;
    batch = std::min(batch * 2, 64);
  }
  return us;
}

std::vector<std::vector<double>> Harness::interleave(const std::vector<Call>& calls, const TimingOptions& o) {
  Impl& m = *impl_;
  const CUstream s = m.stream.handle();
  const std::size_t k = calls.size();
  std::vector<std::vector<double>> us(k);
  if (k == 0) return us;
  // One counter for all calls, so every launch gets the next input set: with a counter per
  // call, the calls of a round shared one set, and all but the first of a round ran on L2
  // lines the first had just loaded. The H200 tunes of 2026-11-29 showed it: winners raced
  // that way re-timed alone (cold, as intended) 6% slower at the median and up to 30% in
  // 12-30 us decode buckets, while the same race repeated moved 1%.
  int rep = 0;
  for (std::size_t i = 0; i < k; ++i) calls[i](rep++, s);  // one untimed call each
  m.stream.synchronize();
  const auto t0 = clk::now();
  const int max_rounds = std::max(o.max_reps, o.min_reps);
  int rounds = 0;
  const int batch = std::max(1, int(32 / k));  // rounds per synchronisation
  m.ensure_events(std::size_t(batch) * k);
  while (rounds < max_rounds) {
    const int n = std::min(batch, max_rounds - rounds);
    for (int r = 0; r < n; ++r)
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t i = (std::size_t(rounds + r) + j) % k;  // who goes first rotates
        const std::size_t e = 2 * (std::size_t(r) * k + i);
        m.before_timed(s, o.spin_ns, rep);
        m.events[e].record(s);
        calls[i](rep++, s);
        m.events[e + 1].record(s);
      }
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < k; ++i) {
        const std::size_t e = 2 * (std::size_t(r) * k + i);
        us[i].push_back(double(cu::elapsed_ms(m.events[e], m.events[e + 1])) * 1e3);
      }
    rounds += n;
    if (rounds >= o.min_reps && seconds_since(t0) >= o.budget_s) break;
  }
  return us;
}

void Harness::fill_random(void* dst, std::size_t bytes, DType dt, std::uint32_t seed) {
  if (bytes < 2) return;
  unsigned long long n = bytes / 2;
  CUdeviceptr p = CUdeviceptr(reinterpret_cast<std::uintptr_t>(dst));
  int fp16 = dt == DType::fp16 ? 1 : 0;
  unsigned sd = seed;
  void* args[] = {&p, &n, &sd, &fp16};
  const unsigned blocks = unsigned(std::min<unsigned long long>((n + 255) / 256, 4096));
  cu::launch(impl_->fill, {blocks, 1, 1}, {256, 1, 1}, 0, impl_->stream.handle(), args);
}

// ---- inputs ----------------------------------------------------------------------------

struct AttentionInputs::Impl {
  Harness& h;
  cu::Buffer pool;
  AttentionArgs shape;
  Rotation rot;
  std::size_t set_bytes = 0;
  // Offsets inside one set.
  std::size_t off_q = 0, off_r = 0, off_k = 0, off_v = 0, off_o = 0, off_table = 0;
  explicit Impl(Harness& harness) : h(harness) {}
};

AttentionInputs::AttentionInputs(Harness& h) : impl_(std::make_unique<Impl>(h)) {}
AttentionInputs::~AttentionInputs() = default;

void AttentionInputs::prepare(const AttentionArgs& a, double max_fraction) {
  Impl& m = *impl_;
  auto align = [](std::size_t x) { return (x + 255) / 256 * 256; };
  const std::size_t e = 2, d = std::size_t(a.head_dim);
  const std::size_t q = std::size_t(a.batch) * a.q_len * a.heads_q * d * e;
  std::size_t kv_rows = std::size_t(a.batch) * a.kv_len, pages = 0;
  if (a.page_size > 0) {
    pages = (std::size_t(a.kv_len) + a.page_size - 1) / a.page_size;
    kv_rows = std::size_t(a.batch) * pages * a.page_size;
  }
  const std::size_t kv = kv_rows * a.heads_kv * d * e;
  m.off_q = 0;
  m.off_r = align(q);
  m.off_k = m.off_r + (has_probe(a.family) ? align(q) : 0);
  m.off_v = m.off_k + align(kv);
  m.off_o = m.off_v + align(kv);
  m.off_table = m.off_o + align(q);
  m.set_bytes = m.off_table + align(std::size_t(a.batch) * pages * sizeof(int));

  auto [free_b, total_b] = std::pair<std::size_t, std::size_t>{0, 0};
  PLX_CU(cu::api().cuMemGetInfo(&free_b, &total_b));
  const std::size_t budget = std::size_t(double(free_b + m.pool.size()) * max_fraction);
  if (m.set_bytes > budget)
    throw Error(fmt::format("inputs of batch {} q_len {} kv_len {} heads {}/{} d {} need {:.2f} GB; {:.2f} GB of "
                            "device memory may be used",
                            a.batch, a.q_len, a.kv_len, a.heads_q, a.heads_kv, a.head_dim, m.set_bytes / 1e9,
                            budget / 1e9));
  m.rot = rotation_for(m.set_bytes, m.h.l2_bytes(), budget);
  const std::size_t need = m.set_bytes * std::size_t(m.rot.sets);
  if (m.pool.size() < need) {
    m.pool = cu::Buffer();  // free first: old + new may not both fit
    m.pool = cu::Buffer(need);
  }
  m.shape = a;
  m.h.set_flush(m.rot.flush);
  char* base = static_cast<char*>(m.pool.data());
  std::mt19937 rng(7);
  std::vector<int> table;
  for (int s = 0; s < m.rot.sets; ++s) {
    char* set = base + std::size_t(s) * m.set_bytes;
    const std::uint32_t seed = 0x51ed2701u + 16u * unsigned(s);
    m.h.fill_random(set + m.off_q, q, a.dtype, seed);
    if (has_probe(a.family)) m.h.fill_random(set + m.off_r, q, a.dtype, seed + 1);
    m.h.fill_random(set + m.off_k, kv, a.dtype, seed + 2);
    m.h.fill_random(set + m.off_v, kv, a.dtype, seed + 3);
    if (pages > 0) {
      // A serving engine's allocator leaves a sequence's pages anywhere in the pool.
      table.resize(std::size_t(a.batch) * pages);
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), rng);
      PLX_CU(cu::api().cuMemcpyHtoDAsync(CUdeviceptr(reinterpret_cast<std::uintptr_t>(set + m.off_table)),
                                         table.data(), table.size() * sizeof(int),
                                         static_cast<CUstream>(m.h.stream())));
      // The copy reads `table` after this call returns: wait before reshuffling it.
      PLX_CU(cu::api().cuStreamSynchronize(static_cast<CUstream>(m.h.stream())));
    }
  }
  PLX_CU(cu::api().cuStreamSynchronize(static_cast<CUstream>(m.h.stream())));
}

int AttentionInputs::sets() const { return impl_->rot.sets; }
std::size_t AttentionInputs::bytes_per_set() const { return impl_->set_bytes; }

AttentionArgs AttentionInputs::args(int rep) const {
  const Impl& m = *impl_;
  AttentionArgs a = m.shape;
  char* set = static_cast<char*>(m.pool.data()) + std::size_t(rep % std::max(1, m.rot.sets)) * m.set_bytes;
  a.q = set + m.off_q;
  a.r = has_probe(a.family) ? set + m.off_r : nullptr;
  a.k = set + m.off_k;
  a.v = set + m.off_v;
  a.o = set + m.off_o;
  if (a.page_size > 0) {
    a.block_table = reinterpret_cast<const int*>(set + m.off_table);
    a.max_pages = (a.kv_len + a.page_size - 1) / a.page_size;
  }
  return a;
}

}  // namespace plx::measure
