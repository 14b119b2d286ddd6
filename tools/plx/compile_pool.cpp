#include "compile_pool.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "parallax/errors.hpp"
#include "runtime/jit.hpp"

namespace plx::cli {

std::vector<CompileOutcome> compile_all(const std::vector<CompileJob>& jobs, KernelCache* cache, int threads,
                                        const std::function<void(std::size_t, std::size_t)>& progress) {
  std::vector<CompileOutcome> out(jobs.size());
  std::atomic<std::size_t> next{0};
  std::size_t done = 0;
  std::mutex mu;  // serialises progress()
  auto worker = [&] {
    for (std::size_t i = next++; i < jobs.size(); i = next++) {
      CompileOutcome& o = out[i];
      try {
        o.compiled = cache ? compile_kernel(*cache, jobs[i].kernel, jobs[i].arch)
                           : compile_kernel(jobs[i].kernel, jobs[i].arch);
        o.ok = true;
      } catch (const std::exception& e) {  // one bad kernel must not stop the others
        o.error = e.what();
      }
      std::lock_guard lock(mu);
      ++done;
      if (progress) progress(done, jobs.size());
    }
  };
  const int n = std::clamp<int>(threads, 1, int(std::max<std::size_t>(jobs.size(), 1)));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return out;
}

int default_jobs() { return int(std::max(1u, std::thread::hardware_concurrency())); }

std::function<void(std::size_t, std::size_t)> progress_line(std::string label) {
  if (!::isatty(STDERR_FILENO)) return {};
  return [label = std::move(label)](std::size_t done, std::size_t total) {
    fmt::print(stderr, "\r{} {}/{}{}", label, done, total, done == total ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace plx::cli
