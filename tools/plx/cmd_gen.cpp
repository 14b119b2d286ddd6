// plx gen: specs -> variants (names), dropped combinations (with the reason), and
// optionally the rendered sources on disk and an NVRTC compile of each.
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <tuple>

#include "args.hpp"
#include "commands.hpp"
#include "common/fs_atomic.hpp"
#include "common/json.hpp"
#include "compile_pool.hpp"
#include "generator/expand.hpp"
#include "generator/render.hpp"
#include "generator/spec.hpp"
#include "runtime/compiler.hpp"
#include "runtime/kernel_cache.hpp"

namespace plx::cli {

namespace {

constexpr const char* kHelp = R"(Usage: plx gen SPEC.yaml... [options]

Expands each spec into its variants: one line per variant (its name), one per dropped
combination ("dropped NAME: REASON"), and a summary line per spec. No GPU needed. Exits 1
if a spec yields no variant at all (every combination dropped).

Output:
  --out DIR        write DIR/<variant>.cu (the rendered source) for every variant and
                   DIR/index.json describing them
  --json           print the variants as one JSON array instead of the lines above
Compilation:
  --compile        compile every variant (and the split-KV merge kernels of decode specs)
                   with NVRTC through the compile cache; prints
                   "<name> regs R spill S smem B ok|FAILED"; exit 1 if any failed
  -j, --jobs N     compile on N threads (default: the number of hardware threads)
)";

json::Value describe(const Variant& v, const std::string& file) {
  json::Value o = json::Value::object();
  o.set("name", v.name());
  o.set("op", std::string(to_string(v.op)));
  o.set("family", std::string(to_string(v.family)));
  o.set("dtype", std::string(to_string(v.dtype)));
  o.set("head_dim", v.head_dim);
  o.set("causal", v.causal);
  o.set("window", v.window);
  o.set("block_m", v.tile.block_m);
  o.set("block_n", v.tile.block_n);
  o.set("warps", v.tile.warps);
  o.set("stages", v.tile.stages);
  o.set("split_kv", v.tile.split_kv);
  o.set("arch", std::string(to_string(v.arch)));
  if (!file.empty()) o.set("file", file);
  return o;
}

}  // namespace

int cmd_gen(const std::vector<std::string>& argv) {
  const Args a = parse(argv, {{"out", true}, {"compile", false}, {"jobs", true, 'j'}, {"json", false}}, "gen");
  if (a.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  if (a.positional.empty()) throw UsageError("gen: no spec given (plx gen SPEC.yaml...)");
  const int jobs = a.get_int("jobs", default_jobs(), 1, 1024);
  const bool as_json = a.has("json");
  const std::optional<std::string> out_dir = a.get("out");

  // Every spec is parsed before anything is written, so a bad one leaves no partial output.
  std::vector<std::pair<KernelSpec, ExpandResult>> specs;
  for (const std::string& path : a.positional) {
    KernelSpec spec = load_spec(path);
    ExpandResult ex = expand(spec);
    specs.emplace_back(std::move(spec), std::move(ex));
  }

  json::Value index = json::Value::array();
  std::vector<CompileJob> jobs_list;
  std::map<std::tuple<Family, DType, int, Arch>, bool> merges;  // decode merge kernels, once each
  std::map<std::tuple<Family, DType, int, Arch>, bool> pres;    // backward preprocess kernels, once each
  for (const auto& [spec, ex] : specs) {
    for (const Variant& v : ex.variants) {
      std::string file;
      if (out_dir || a.has("compile")) {
        const RenderedKernel r = render(v);
        if (out_dir) {
          file = v.name() + ".cu";
          std::filesystem::create_directories(*out_dir);
          write_file_atomic(std::filesystem::path(*out_dir) / file, r.source);
        }
        if (a.has("compile")) jobs_list.push_back({r, std::string(to_string(v.arch))});
      }
      if (v.op == Op::decode && a.has("compile") && !merges[{v.family, v.dtype, v.head_dim, v.arch}]) {
        merges[{v.family, v.dtype, v.head_dim, v.arch}] = true;
        jobs_list.push_back({render_merge(v.family, v.dtype, v.head_dim), std::string(to_string(v.arch))});
      }
      if (v.op == Op::backward && a.has("compile") && !pres[{v.family, v.dtype, v.head_dim, v.arch}]) {
        pres[{v.family, v.dtype, v.head_dim, v.arch}] = true;  // the backward's preprocess kernel
        jobs_list.push_back({render_backward_pre(v.family, v.dtype, v.head_dim), std::string(to_string(v.arch))});
      }
      index.push_back(describe(v, file));
      if (!as_json) fmt::print("{}\n", v.name());
    }
    if (!as_json) {
      for (const Dropped& d : ex.dropped) fmt::print("dropped {}: {}\n", d.v.name(), d.reason);
      fmt::print("{} ({}): {} variants, {} dropped\n", spec.name, spec.source, ex.variants.size(), ex.dropped.size());
    }
  }
  if (out_dir) {
    write_file_atomic(std::filesystem::path(*out_dir) / "index.json", index.dump(2) + "\n");
    if (!as_json) fmt::print("wrote {} sources and index.json to {}\n", index.size(), *out_dir);
  }
  if (as_json) fmt::print("{}\n", index.dump(2));
  // A spec whose every combination is illegal describes no kernel: almost always a mistake
  // (e.g. the TMA decode spec with arch sm_80), so it is an error, not "0 variants".
  int empty = 0;
  for (const auto& [spec, ex] : specs) {
    if (!ex.variants.empty()) continue;
    ++empty;
    fmt::print(stderr, "plx gen: {} ({}): every one of its {} combinations was dropped, so it describes no kernel{}\n",
               spec.name, spec.source, ex.dropped.size(),
               ex.dropped.empty() ? std::string() : fmt::format("; the first: {}: {}", ex.dropped[0].v.name(),
                                                                ex.dropped[0].reason));
  }
  if (!a.has("compile")) return empty ? 1 : 0;

  KernelCache cache(KernelCache::default_root());
  const auto outcomes = compile_all(jobs_list, &cache, jobs, progress_line("compiling"));
  int failed = 0;
  for (std::size_t i = 0; i < jobs_list.size(); ++i) {
    const CompileOutcome& o = outcomes[i];
    const RenderedKernel& r = jobs_list[i].kernel;
    if (o.ok) {
      fmt::print("{} regs {} spill {} smem {} ok\n", r.display_name, o.compiled.registers, o.compiled.spill_bytes,
                 r.smem_bytes);
      for (const std::string& w : performance_warnings(o.compiled)) fmt::print("  warning: {}\n", w);
    } else {
      ++failed;
      fmt::print("{} regs - spill - smem {} FAILED\n{}\n", r.display_name, r.smem_bytes, o.error);
    }
  }
  fmt::print("compiled {} kernels on {} threads: {} ok, {} failed\n", jobs_list.size(), jobs,
             jobs_list.size() - failed, failed);
  return failed || empty ? 1 : 0;
}

}  // namespace plx::cli
