// Where the CLI finds the shipped specs when it is not run from the source tree.
#pragma once
#include <filesystem>
#include <optional>
#include <vector>

namespace plx::cli {

// Candidate source roots, in the order they are tried: the current directory,
// $PLX_SOURCE_DIR, the source dir compiled in (when the build defines it), and the
// directory above the executable's (build/plx -> the checkout).
std::vector<std::filesystem::path> source_roots();

// The first root holding `relative` (e.g. "specs/decode_sm90.yaml"), joined with it.
std::optional<std::filesystem::path> find_in_source(const std::filesystem::path& relative);

}  // namespace plx::cli
