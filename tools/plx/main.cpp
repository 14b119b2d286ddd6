// plx: the parallax-jit command line. main() only dispatches and turns every failure into
// one `plx: <message>` line on stderr: 2 for usage mistakes, 1 for everything else.
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "args.hpp"
#include "commands.hpp"
#include "parallax/errors.hpp"

namespace {

constexpr const char* kHelp = R"(plx {} -- JIT CUDA kernels for Parallax attention

Usage: plx <command> [options]      plx <command> --help for the command's options

Kernels (no GPU needed):
  gen SPEC.yaml...        expand specs into variants (and dropped combinations); write
                          the .cu sources (--out), compile them with NVRTC (--compile)
Tuning:
  tune [SPEC.yaml...]     rank variants per problem bucket by a roofline model, race the
                          best on the GPU (oracle-checked, timed within noise), record
                          the winners in the tuning database, write a report and a
                          roofline SVG; without a GPU: a dry run (model only)
  explore SPEC.yaml       per bucket, every variant's predicted time and (with a GPU) its
                          measured time side by side
  bench decode|prefill    time one call per shape through the engine: median, spread,
                          TB/s or TFLOP/s against the measured ceilings (GPU only)
  db show                 tuning databases: identity, match with this GPU, winners
  db export|import FILE   move this GPU's database between machines of the same kind
  db compare A B          do two tunes agree? same winner, tied within noise, or not
  db clear                remove every tuning database
Compile cache:
  cache ls                entries: variant, arch, size, age, key
  cache verify [--fix]    check every entry; --fix quarantines the bad ones
  cache clear             remove every entry
  cache explain VARIANT   would VARIANT hit the cache, and if not, why
Environment:
  doctor                  versions, CUDA driver, GPUs, cache dir, templates, specs

Global options:
  -h, --help              this help
  --version               print the version

Environment variables:
  PLX_CACHE_DIR           compile cache and tuning databases (default $XDG_CACHE_HOME/parallax-jit,
                          else ~/.cache/parallax-jit)
  PLX_SOURCE_DIR          source tree holding specs/ (when not run from it)
  PLX_TUNE=sync           plx::Engine tunes an untuned bucket inside its first call and
                          records the winner (default: the model's choice at once)

Variant names encode the whole kernel config and are accepted wherever a variant is
asked for, e.g. plx_decode_parallax_bf16_d128_causal_m8_n64_w4_s3_kauto_sm90a.
)";

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) throw plx::cli::UsageError("no command given (see plx --help)");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    fmt::print(kHelp, PLX_VERSION);
    return 0;
  }
  if (args[0] == "--version") {
    fmt::print("plx {}\n", PLX_VERSION);
    return 0;
  }
  const std::string cmd = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "gen") return plx::cli::cmd_gen(rest);
  if (cmd == "tune") return plx::cli::cmd_tune(rest);
  if (cmd == "bench") return plx::cli::cmd_bench(rest);
  if (cmd == "explore") return plx::cli::cmd_explore(rest);
  if (cmd == "cache") return plx::cli::cmd_cache(rest);
  if (cmd == "db") return plx::cli::cmd_db(rest);
  if (cmd == "doctor") return plx::cli::cmd_doctor(rest);
  throw plx::cli::UsageError(fmt::format("unknown command '{}' (commands: gen, tune, explore, bench, db, cache, doctor; see plx --help)", cmd));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int rc = run(argc, argv);
    std::fflush(stdout);
    return rc;
  } catch (const plx::cli::UsageError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "plx: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::string msg = e.what();
    // Multi-line messages (NVRTC logs) keep their first line here; commands that want the
    // detail print it themselves.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    fmt::print(stderr, "plx: {}\n", msg);
    return 1;
  } catch (...) {
    fmt::print(stderr, "plx: unknown error\n");
    return 1;
  }
}
