// A small well-formedness check for the SVG the tuner writes (no XML library in the
// project): every tag closes in order, attribute values are quoted, '&' starts an entity,
// and there is exactly one root element. Returns "" or what is wrong and where.
#pragma once
#include <cctype>
#include <string>
#include <vector>

namespace plx::testing {

inline std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  int roots = 0;
  std::size_t i = 0;
  auto at = [&](std::size_t p) { return " at offset " + std::to_string(p); };
  while (i < s.size()) {
    if (s[i] == '&') {
      const std::size_t semi = s.find(';', i);
      const std::string ent = semi == std::string::npos ? "" : s.substr(i, semi - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;")
        return "bare '&'" + at(i);
      i = semi + 1;
      continue;
    }
    if (s[i] == '>') return "stray '>'" + at(i);
    if (s[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i]))) return "text outside the root" + at(i);
      ++i;
      continue;
    }
    if (s.compare(i, 2, "<?") == 0) {
      const std::size_t e = s.find("?>", i);
      if (e == std::string::npos) return "unterminated <?" + at(i);
      i = e + 2;
      continue;
    }
    // A tag: scan to '>' outside quotes.
    std::size_t j = i + 1;
    char quote = 0;
    for (; j < s.size(); ++j) {
      if (quote) {
        if (s[j] == quote) quote = 0;
        else if (s[j] == '<') return "'<' inside an attribute value" + at(j);
      } else if (s[j] == '"' || s[j] == '\'') {
        quote = s[j];
      } else if (s[j] == '>') {
        break;
      }
    }
    if (j >= s.size()) return "unterminated tag" + at(i);
    std::string tag = s.substr(i + 1, j - i - 1);
    const bool closing = !tag.empty() && tag[0] == '/';
    const bool self = !tag.empty() && tag.back() == '/';
    std::size_t k = closing ? 1 : 0;
    std::string name;
    while (k < tag.size() && (std::isalnum(static_cast<unsigned char>(tag[k])) || tag[k] == ':' || tag[k] == '-'))
      name += tag[k++];
    if (name.empty()) return "tag without a name" + at(i);
    // Attributes: name="value" pairs.
    while (!closing && k < tag.size()) {
      while (k < tag.size() && std::isspace(static_cast<unsigned char>(tag[k]))) ++k;
      if (k >= tag.size() || tag[k] == '/') break;
      std::size_t eq = tag.find('=', k);
      if (eq == std::string::npos || eq + 1 >= tag.size() || (tag[eq + 1] != '"' && tag[eq + 1] != '\''))
        return "unquoted attribute in <" + name + ">" + at(i);
      const std::size_t end = tag.find(tag[eq + 1], eq + 2);
      if (end == std::string::npos) return "unterminated attribute in <" + name + ">" + at(i);
      k = end + 1;
    }
    if (closing) {
      if (stack.empty() || stack.back() != name) return "</" + name + "> does not close the open tag" + at(i);
      stack.pop_back();
    } else if (!self) {
      if (stack.empty()) ++roots;
      stack.push_back(name);
    } else if (stack.empty()) {
      ++roots;
    }
    i = j + 1;
  }
  if (!stack.empty()) return "<" + stack.back() + "> never closed";
  if (roots != 1) return std::to_string(roots) + " root elements";
  return "";
}

}  // namespace plx::testing
