// Vocabulary shared by the public API and the generator.
#pragma once

namespace plx {

// The attention family member (parallax-math.md section 6).
enum class Family { softmax = 0, parallax = 1, parallax_uncentered = 2 };
enum class DType { bf16 = 0, fp16 = 1 };

}  // namespace plx
