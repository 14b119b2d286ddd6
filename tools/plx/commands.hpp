// One function per `plx` command (cmd_<name>.cpp). Each takes the arguments after the
// command name, prints its results on stdout and returns the exit status; failures are
// thrown (plx::Error -> exit 1, cli::UsageError -> exit 2) and printed once by main.
#pragma once
#include <string>
#include <vector>

namespace plx::cli {

int cmd_gen(const std::vector<std::string>& args);
int cmd_tune(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_explore(const std::vector<std::string>& args);
int cmd_cache(const std::vector<std::string>& args);
int cmd_db(const std::vector<std::string>& args);
int cmd_doctor(const std::vector<std::string>& args);

}  // namespace plx::cli
