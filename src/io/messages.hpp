#pragma once
// Internal: how the readers render values in their error messages.

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace lora::detail {

/// A tensor shape as "[a, b, c]".
inline std::string shapeText(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

/// A JSON value, dumped and cut to 80 characters (invalid UTF-8 replaced).
inline std::string jsonBrief(const nlohmann::ordered_json& j) {
  std::string text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

}  // namespace lora::detail
