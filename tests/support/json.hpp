#pragma once
// Test support: a JSON file read whole.

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace lora::test {

inline nlohmann::json readJson(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

}  // namespace lora::test
