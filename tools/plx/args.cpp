#include "args.hpp"

#include <fmt/format.h>

#include <charconv>

namespace plx::cli {

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

int Args::get_int(const std::string& name, int fallback, int lo, int hi) const {
  auto v = get(name);
  if (!v) return fallback;
  int out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || out < lo || out > hi)
    throw UsageError(fmt::format("--{} wants an integer in {}..{}, got '{}'", name, lo, hi, *v));
  return out;
}

Args parse(const std::vector<std::string>& argv, const std::vector<Option>& options, const std::string& command) {
  Args a;
  auto find_long = [&](const std::string& n) -> const Option* {
    for (const Option& o : options)
      if (o.name == n) return &o;
    return nullptr;
  };
  auto find_short = [&](char c) -> const Option* {
    for (const Option& o : options)
      if (o.alias == c) return &o;
    return nullptr;
  };
  bool only_positional = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (only_positional || s.size() < 2 || s[0] != '-') {
      a.positional.push_back(s);
      continue;
    }
    if (s == "--") {
      only_positional = true;
      continue;
    }
    if (s == "--help" || s == "-h") {
      a.flags_.insert("help");
      continue;
    }
    const Option* o = nullptr;
    std::optional<std::string> inline_value;
    if (s[1] == '-') {
      std::string name = s.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      o = find_long(name);
    } else if (s.size() == 2) {
      o = find_short(s[1]);
    }
    if (!o) throw UsageError(fmt::format("{}: unknown option '{}' (see plx {} --help)", command, s, command));
    if (!o->takes_value) {
      if (inline_value) throw UsageError(fmt::format("{}: --{} takes no value", command, o->name));
      a.flags_.insert(o->name);
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argv.size()) throw UsageError(fmt::format("{}: --{} needs a value", command, o->name));
      inline_value = argv[++i];
    }
    a.values_[o->name] = *inline_value;
  }
  return a;
}

}  // namespace plx::cli
