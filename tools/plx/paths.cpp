#include "paths.hpp"

#include <cstdlib>
#include <system_error>

namespace plx::cli {

namespace fs = std::filesystem;

std::vector<fs::path> source_roots() {
  std::vector<fs::path> roots{fs::current_path()};
  if (const char* env = std::getenv("PLX_SOURCE_DIR"); env && *env) roots.emplace_back(env);
#ifdef PLX_SOURCE_DIR
  roots.emplace_back(PLX_SOURCE_DIR);  // only where the build defines it for this target
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path());
  return roots;
}

std::optional<fs::path> find_in_source(const fs::path& relative) {
  for (const fs::path& root : source_roots()) {
    std::error_code ec;
    if (fs::is_regular_file(root / relative, ec)) return root / relative;
  }
  return std::nullopt;
}

}  // namespace plx::cli
