#pragma once
// Internal: the bytes of a file that a reader parses, read into memory or mapped (read-only),
// shared by the readers' copies; the mapping goes when the last copy does.

#include <sys/mman.h>

#include <cstddef>
#include <vector>

namespace lora::detail {

struct FileBytes {
  std::vector<std::byte> owned;
  void* mapped = nullptr;
  std::size_t mappedSize = 0;

  FileBytes() = default;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes() {
    if (mapped != nullptr) ::munmap(mapped, mappedSize);
  }
  const std::byte* data() const {
    return mapped != nullptr ? static_cast<const std::byte*>(mapped) : owned.data();
  }
  std::size_t size() const { return mapped != nullptr ? mappedSize : owned.size(); }
};

}  // namespace lora::detail
