// libFuzzer target: lora::SafeTensorsReader over arbitrary bytes. Every input must either parse
// or throw lora::Error; any other exception, crash, leak or sanitizer report is a finding. A file
// that parses is read back in full: every tensor's raw bytes, and every 1-D or 2-D tensor decoded
// to float and double (what the adapter loaders do); and the file read as a kohya LoRA
// (readKohyaLayout), each module's factors decoded as the resize reads them.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lora/error.hpp"
#include "lora/io/kohya.hpp"
#include "lora/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(data[i]);
  try {
    const lora::SafeTensorsReader reader =
        lora::SafeTensorsReader::fromBytes(std::move(bytes), "fuzz");
    std::size_t touched = 0;
    for (const std::string& name : reader.names()) {
      const lora::TensorInfo& info = reader.info(name);
      for (std::byte b : reader.rawBytes(name)) touched += static_cast<std::size_t>(b);
      try {
        if (info.shape.size() == 2) {
          touched += static_cast<std::size_t>(reader.matrix<float>(name).size());
          touched += static_cast<std::size_t>(reader.matrix<double>(name).size());
        } else if (info.shape.size() == 1) {
          touched += static_cast<std::size_t>(reader.vector<float>(name).size());
        }
        touched += static_cast<std::size_t>(reader.flat<double>(name).size());
      } catch (const lora::Error&) {
        // an integer or bool tensor: decoding refuses it with an Error, which is fine
      }
    }
    for (const auto& [key, value] : reader.metadata()) touched += key.size() + value.size();
    try {
      const lora::KohyaLayout layout = lora::readKohyaLayout(reader);
      for (const lora::KohyaModule& m : layout.modules) {
        const auto down = reader.flattenedMatrix<float>(m.keyDown);
        const auto up = reader.flattenedMatrix<double>(m.keyUp);
        if (down.rows() != m.rank || down.cols() != m.columns() || up.rows() != m.out ||
            up.cols() != m.rank)
          __builtin_trap();  // the layout must describe the tensors it names
        touched += static_cast<std::size_t>(down.size() + up.size());
      }
      touched += layout.others.size();
    } catch (const lora::Error&) {
      // not a kohya LoRA: refused with an Error, which is fine
    }
    if (touched == 1) return 0;  // keeps the reads from being optimized away
  } catch (const lora::Error&) {
  }
  return 0;
}
