// The device headers of templates/, compiled into the library (cmake/embed_templates.cmake).
#pragma once
#include <string_view>
#include <vector>

namespace plx {

struct EmbeddedHeader {
  std::string_view name;     // include name, e.g. "plx/decode.cuh"
  std::string_view content;
};

const std::vector<EmbeddedHeader>& embedded_headers();

}  // namespace plx
