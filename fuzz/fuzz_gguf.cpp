// libFuzzer target: lora::GgufReader over arbitrary bytes. Every input must either parse or throw
// lora::Error; any other exception, crash, leak or sanitizer report is a finding. A file that
// parses is read back in full: every value rendered, every tensor's raw bytes, and every 1-D or
// 2-D tensor of a decodable type decoded (what `lora convert` does).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lora/error.hpp"
#include "lora/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(data[i]);
  try {
    const lora::GgufReader reader = lora::GgufReader::fromBytes(std::move(bytes), "fuzz");
    std::size_t touched = 0;
    for (const auto& [key, value] : reader.metadata()) touched += key.size() + value.brief().size();
    for (const lora::GgufTensorInfo& t : reader.tensors()) {
      for (std::byte b : reader.rawBytes(t)) touched += static_cast<std::size_t>(b);
      try {
        touched += static_cast<std::size_t>(reader.matrix(t).size());
      } catch (const lora::Error&) {
        // another type or more than two dimensions: refused with an Error, which is fine
      }
    }
    if (touched == 1) return 0;  // keeps the reads from being optimized away
  } catch (const lora::Error&) {
  }
  return 0;
}
