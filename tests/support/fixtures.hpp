#pragma once
// Test support: where the PEFT reference fixtures live.

#include <cstdlib>
#include <filesystem>
#include <string>

namespace lora::test {

/// The fixture set: $LORA_PEFT_FIXTURES, or ../shared/peft-fixtures/set_a relative to the
/// repository root (LORA_SOURCE_DIR is defined by tests/CMakeLists.txt).
inline std::filesystem::path fixtureDir() {
  if (const char* env = std::getenv("LORA_PEFT_FIXTURES"); env != nullptr && *env != '\0') {
    return std::filesystem::path(env);
  }
  return std::filesystem::path(LORA_SOURCE_DIR) / ".." / "shared" / "peft-fixtures" / "set_a";
}

}  // namespace lora::test
