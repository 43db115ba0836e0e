#pragma once
// Test support: where the PEFT reference fixtures live.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace lora::test {

/// The fixture set: $LORA_PEFT_FIXTURES, or ../shared/peft-fixtures/set_a relative to the
/// repository root (LORA_SOURCE_DIR is defined by tests/CMakeLists.txt).
inline std::filesystem::path fixtureDir() {
  if (const char* env = std::getenv("LORA_PEFT_FIXTURES"); env != nullptr && *env != '\0') {
    return std::filesystem::path(env);
  }
  return std::filesystem::path(LORA_SOURCE_DIR) / ".." / "shared" / "peft-fixtures" / "set_a";
}

/// The fixture set's variants: its folders that hold an adapter_config.json, sorted.
inline std::vector<std::filesystem::path> variantDirs() {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fixtureDir(), ec)) {
    if (e.is_directory() && fs::exists(e.path() / "adapter_config.json")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lora::test
