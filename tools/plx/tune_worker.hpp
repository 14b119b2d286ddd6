// The worker side of `plx tune` (`plx tune --worker JOB.json`; the parent's side and the
// protocol are autotune/tune_workers.hpp), and the ceilings of the GPU at hand for the
// commands that report fractions of them.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "autotune/ceilings.hpp"

namespace plx::cu {
class Device;
}

namespace plx::cli {

// This executable with the arguments that make it a tuning worker.
std::vector<std::string> worker_command();

// This GPU's ceilings: from its tuning database, else measured now in a worker and stored
// there (the first `plx bench` or `plx explore` on a GPU pays the second once). nullopt,
// with *note saying why, when the measurement fails; *note also says where they came from.
std::optional<Ceilings> gpu_ceilings(const cu::Device& dev, const std::filesystem::path& cache_root, std::string* note);

// The worker: `plx tune --worker JOB.json`. Returns the exit status.
int tune_worker_main(const std::string& job_file);

}  // namespace plx::cli
