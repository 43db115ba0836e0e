#pragma once
// Internal: the header of a safetensors file, as SafeTensorsWriter writes it and as the streaming
// PeftAdapterWriter writes it last, into room reserved before the data.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lora/io/safetensors.hpp"

namespace lora::detail {

/// One tensor's header entry: bytes [begin, end) of the data section.
struct SafeTensorsHeaderEntry {
  std::string_view name;
  DType dtype = DType::F32;
  const std::vector<std::int64_t>* shape = nullptr;
  std::uint64_t begin = 0, end = 0;
};

/// The JSON header: `__metadata__` first (when not empty), then the tensors in the order given,
/// padded with spaces to a multiple of 8 bytes (as the reference writer pads it). \p where and
/// \p target name the caller in errors.
std::string safetensorsHeader(const std::vector<SafeTensorsHeaderEntry>& entries,
                              const std::map<std::string, std::string>& metadata,
                              std::string_view where, const std::string& target);

}  // namespace lora::detail
