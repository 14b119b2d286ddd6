#include "generator/expand.hpp"

#include <unordered_set>

#include "generator/legality.hpp"

namespace plx {

ExpandResult expand(const KernelSpec& spec) {
  ExpandResult out;
  std::unordered_set<std::string> seen;  // a name encodes the whole Variant
  const std::vector<bool> windows = spec.window_flags();
  for (Family family : spec.families)
    for (DType dtype : spec.dtypes)
      for (int head_dim : spec.head_dims)
        for (bool causal : spec.causal)
          for (bool window : windows)
            for (int block_m : spec.tile.block_m)
              for (int block_n : spec.tile.block_n)
                for (int warps : spec.tile.warps)
                  for (int stages : spec.tile.stages)
                    for (int split_kv : spec.tile.split_kv)
                      for (Mma mma : spec.tile.mma)
                      for (Loader loader : spec.tile.loader)
                      for (Arch arch : spec.archs) {
                        Variant v;
                        v.op = spec.op;
                        v.family = family;
                        v.dtype = dtype;
                        v.head_dim = head_dim;
                        v.causal = causal;
                        v.window = window;
                        v.tile = Tile{block_m, block_n, warps, stages, split_kv, mma, loader};
                        if (spec.op != Op::decode && v.tile.split_kv == 0) v.tile.split_kv = 1;
                        v.arch = arch;
                        if (!seen.insert(v.name()).second) continue;
                        if (auto why = why_illegal(v)) out.dropped.push_back({v, std::move(*why)});
                        else out.variants.push_back(v);
                      }
  return out;
}

}  // namespace plx
