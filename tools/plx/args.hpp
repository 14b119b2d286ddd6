// A small option parser for the plx commands: `--name value`, `--name=value`, boolean
// `--flag`, short aliases (-j 4, -h), and positional arguments. Every command declares
// its options, so a misspelt one is a usage error instead of being ignored.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace plx::cli {

// A mistake on the command line: `plx: <message>` and exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Option {
  std::string name;         // without dashes: "out"
  bool takes_value = false;
  char alias = 0;           // short form, e.g. 'j' for -j
};

class Args {
 public:
  std::vector<std::string> positional;

  bool has(const std::string& name) const { return flags_.count(name) || values_.count(name); }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // An integer in [lo, hi]; UsageError naming the option otherwise.
  int get_int(const std::string& name, int fallback, int lo, int hi) const;

 private:
  friend Args parse(const std::vector<std::string>&, const std::vector<Option>&, const std::string&);
  std::set<std::string> flags_;
  std::map<std::string, std::string> values_;
};

// `command` names the command in messages ("gen"). --help / -h is always accepted.
Args parse(const std::vector<std::string>& argv, const std::vector<Option>& options, const std::string& command);

}  // namespace plx::cli
