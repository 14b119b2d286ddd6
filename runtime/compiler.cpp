#include "runtime/compiler.hpp"

#include <fmt/format.h>
#include <nvrtc.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>

#include "parallax/errors.hpp"

namespace plx {
namespace {

struct ProgramDeleter {
  void operator()(nvrtcProgram p) const { nvrtcDestroyProgram(&p); }
};
using Program = std::unique_ptr<std::remove_pointer_t<nvrtcProgram>, ProgramDeleter>;

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t end = s.find('\n', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view line = s.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    start = end + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ' ';
    out += s;
  }
  return out;
}

// The number just before `suffix` in `line` ("Used 40 registers" -> 40), if any.
std::optional<int> number_before(std::string_view line, std::string_view suffix) {
  std::size_t pos = line.find(suffix);
  if (pos == std::string_view::npos) return std::nullopt;
  std::size_t end = pos;
  while (end > 0 && line[end - 1] == ' ') --end;
  std::size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(line[begin - 1]))) --begin;
  if (begin == end) return std::nullopt;
  return std::stoi(std::string(line.substr(begin, end - begin)));
}

// "file(LINE): error: ..." as NVRTC's front end prints it.
struct Located {
  std::string file;
  int line = 0;
};

std::optional<Located> located_error(std::string_view line) {
  std::size_t close = line.find("): ");
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(close + 3);
  if (!rest.starts_with("error") && !rest.starts_with("catastrophic error"))
    return std::nullopt;
  std::size_t open = line.rfind('(', close);
  if (open == std::string_view::npos || open + 1 == close) return std::nullopt;
  std::string_view num = line.substr(open + 1, close - open - 1);
  for (char c : num)
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  return Located{std::string(line.substr(0, open)), std::stoi(std::string(num))};
}

bool is_error_line(std::string_view line) {
  return located_error(line) || line.starts_with("ptxas error") ||
         line.starts_with("ptxas fatal") || line.starts_with("nvlink error") ||
         line.starts_with("error");
}

// The source or in-memory header the log calls `file` (nullptr when it is neither,
// e.g. NVRTC's generated "__nv_name_map").
const std::string* file_text(const CompileRequest& req, const std::string& file) {
  if (file == req.source_name) return &req.source;
  for (const auto& [name, text] : req.headers)
    if (name == file) return &text;
  return nullptr;
}

std::string make_excerpt(const std::string& file, const std::string& text, int line) {
  std::vector<std::string_view> lines = split_lines(text);
  std::string out = fmt::format("{}:{}:\n", file, line);
  int first = std::max(1, line - 3);
  int last = std::min(static_cast<int>(lines.size()), line + 3);
  for (int i = first; i <= last; ++i)
    out += fmt::format("{} {:>5} | {}\n", i == line ? '>' : ' ', i, lines[i - 1]);
  return out;
}

[[noreturn]] void fail(const CompileRequest& req, std::string_view what, const std::string& log,
                       const std::vector<std::string>& options) {
  throw CompileError(fmt::format("NVRTC failed to compile {} ({}): {}", req.display_name,
                                 req.arch, what),
                     log, join(options), "");
}

[[noreturn]] void throw_compile_error(const CompileRequest& req, const std::string& log,
                                      const std::vector<std::string>& options) {
  std::string msg = fmt::format("NVRTC failed to compile {} ({})", req.display_name, req.arch);
  std::vector<std::string_view> errors;
  std::string excerpt;
  bool name_map = false;
  for (std::string_view line : split_lines(log)) {
    if (!is_error_line(line)) continue;
    errors.push_back(line);
    if (line.starts_with("__nv_name_map")) name_map = true;
    if (excerpt.empty())
      if (auto loc = located_error(line))
        if (const std::string* text = file_text(req, loc->file))
          excerpt = make_excerpt(loc->file, *text, loc->line);
  }
  // One or two lines are enough to act on; the rest are usually follow-on errors.
  constexpr std::size_t kShown = 2;
  for (std::size_t i = 0; i < errors.size() && i < kShown; ++i)
    msg += fmt::format("\n{}", errors[i]);
  if (errors.size() > kShown)
    msg += fmt::format("\n... {} more error line{} in the log", errors.size() - kShown,
                       errors.size() - kShown == 1 ? "" : "s");
  if (errors.empty())
    for (std::string_view line : split_lines(log))
      if (!line.empty()) {
        msg += fmt::format("\n{}", line);
        break;
      }
  if (name_map)
    msg += fmt::format("\nname expression '{}' does not name a kernel in {}",
                       req.name_expression, req.source_name);
  if (!excerpt.empty()) msg += "\n" + excerpt;
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  throw CompileError(std::move(msg), log, join(options), std::move(excerpt));
}

std::string program_log(nvrtcProgram p) {
  std::size_t n = 0;
  if (nvrtcGetProgramLogSize(p, &n) != NVRTC_SUCCESS || n == 0) return {};
  std::string log(n, '\0');
  if (nvrtcGetProgramLog(p, log.data()) != NVRTC_SUCCESS) return {};
  while (!log.empty() && log.back() == '\0') log.pop_back();
  return log;
}

}  // namespace

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return fmt::format("{}.{}", major, minor);
}

std::vector<std::string> canonical_options(const CompileRequest& req) {
  std::vector<std::string> opts = {"--gpu-architecture=" + req.arch, "-std=c++17",
                                   "-default-device", "--ptxas-options=-v"};
  // NVRTC 13 reuses the driver's compute cache when libcuda is loadable, and a hit skips
  // ptxas: the log then lacks the -v lines. Older NVRTC has no such cache (nor option).
  static const bool has_cache = [] {
    int major = 0, minor = 0;
    return nvrtcVersion(&major, &minor) == NVRTC_SUCCESS && major >= 13;
  }();
  if (has_cache) opts.push_back("--no-cache");
  opts.insert(opts.end(), req.options.begin(), req.options.end());
  return opts;
}

std::vector<std::string> performance_warnings(const CompiledKernel& k) {
  std::vector<std::string> out;
  for (std::string_view line : split_lines(k.log))
    // ptxas names the function at the end of the note; a log can hold several kernels.
    if (line.starts_with("ptxas") && line.find("Potential Performance Loss") != std::string_view::npos &&
        (k.lowered_name.empty() || line.find(k.lowered_name) != std::string_view::npos))
      out.emplace_back(line);
  return out;
}

namespace detail {

void parse_ptxas_info(const std::string& log, const std::string& mangled, CompiledKernel& k) {
  // ptxas prints, per entry: "Compiling entry function '<m>' for 'sm_90a'", then
  // "Function properties for <m>" with a stack/spill line, then "Used N registers, ...".
  // Non-entry functions may print their own properties in between, hence the tracking.
  bool in_entry = false;
  std::string_view props_for;
  for (std::string_view line : split_lines(log)) {
    if (!line.starts_with("ptxas")) continue;
    constexpr std::string_view kEntry = "Compiling entry function '";
    constexpr std::string_view kProps = "Function properties for ";
    if (std::size_t p = line.find(kEntry); p != std::string_view::npos) {
      std::string_view rest = line.substr(p + kEntry.size());
      in_entry = rest.substr(0, rest.find('\'')) == mangled;
      props_for = {};
    } else if (std::size_t q = line.find(kProps); q != std::string_view::npos) {
      props_for = line.substr(q + kProps.size());
      while (!props_for.empty() && std::isspace(static_cast<unsigned char>(props_for.back())))
        props_for.remove_suffix(1);
    } else if (line.find("bytes stack frame") != std::string_view::npos) {
      if (props_for != mangled) continue;
      k.stack_bytes = number_before(line, " bytes stack frame").value_or(-1);
      auto stores = number_before(line, " bytes spill stores");
      auto loads = number_before(line, " bytes spill loads");
      if (stores && loads) k.spill_bytes = *stores + *loads;
    } else if (in_entry && line.find(" registers") != std::string_view::npos) {
      k.registers = number_before(line, " registers").value_or(-1);
      // ptxas omits the smem field when the kernel has no static shared memory.
      k.static_smem = number_before(line, " bytes smem").value_or(0);
    }
  }
}

}  // namespace detail

CompiledKernel compile(const CompileRequest& in) {
  CompileRequest req = in;
  if (req.display_name.empty()) req.display_name = req.source_name;
  const std::vector<std::string> options = canonical_options(req);
  if (!req.arch.starts_with("sm_"))
    fail(req, fmt::format("arch '{}' is not a real architecture like sm_90a (a cubin is "
                          "needed, not PTX)", req.arch), "", options);
  if (req.name_expression.empty())
    fail(req, "no name expression: the kernel's lowered name cannot be looked up", "",
         options);

  std::vector<const char*> header_text, header_names;
  for (const auto& [name, text] : req.headers) {
    header_names.push_back(name.c_str());
    header_text.push_back(text.c_str());
  }
  nvrtcProgram raw = nullptr;
  nvrtcResult r = nvrtcCreateProgram(&raw, req.source.c_str(), req.source_name.c_str(),
                                     static_cast<int>(header_text.size()), header_text.data(),
                                     header_names.data());
  if (r != NVRTC_SUCCESS)
    fail(req, fmt::format("nvrtcCreateProgram: {}", nvrtcGetErrorString(r)), "", options);
  Program prog(raw);

  r = nvrtcAddNameExpression(prog.get(), req.name_expression.c_str());
  if (r != NVRTC_SUCCESS)
    fail(req, fmt::format("nvrtcAddNameExpression('{}'): {}", req.name_expression,
                          nvrtcGetErrorString(r)), "", options);

  std::vector<const char*> argv;
  for (const auto& o : options) argv.push_back(o.c_str());
  r = nvrtcCompileProgram(prog.get(), static_cast<int>(argv.size()), argv.data());
  CompiledKernel out;
  out.log = program_log(prog.get());
  if (r != NVRTC_SUCCESS) {
    if (r == NVRTC_ERROR_COMPILATION) throw_compile_error(req, out.log, options);
    fail(req, fmt::format("nvrtcCompileProgram: {}\n{}", nvrtcGetErrorString(r), out.log),
         out.log, options);
  }

  const char* lowered = nullptr;
  r = nvrtcGetLoweredName(prog.get(), req.name_expression.c_str(), &lowered);
  if (r != NVRTC_SUCCESS || !lowered)
    fail(req, fmt::format("nvrtcGetLoweredName('{}'): {}", req.name_expression,
                          nvrtcGetErrorString(r)), out.log, options);
  out.lowered_name = lowered;

  std::size_t size = 0;
  r = nvrtcGetCUBINSize(prog.get(), &size);
  if (r != NVRTC_SUCCESS || size == 0)
    fail(req, fmt::format("no cubin for {} ({})", req.arch, nvrtcGetErrorString(r)), out.log,
         options);
  out.cubin.resize(size);
  r = nvrtcGetCUBIN(prog.get(), out.cubin.data());
  if (r != NVRTC_SUCCESS)
    fail(req, fmt::format("nvrtcGetCUBIN: {}", nvrtcGetErrorString(r)), out.log, options);

  detail::parse_ptxas_info(out.log, out.lowered_name, out);
  return out;
}

}  // namespace plx
