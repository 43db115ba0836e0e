#pragma once
// Internal: unaligned little-endian loads and stores through memcpy, for the file formats
// (safetensors, GGUF).

#include <bit>
#include <cstddef>
#include <cstring>
#include <vector>

namespace lora::detail {

template <typename U>
constexpr U byteSwap(U u) noexcept {
  U r = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    r = static_cast<U>((r << 8) | ((u >> (8 * i)) & 0xffu));
  }
  return r;
}

template <typename U>
U loadLittle(const std::byte* p) noexcept {
  U u;
  std::memcpy(&u, p, sizeof(U));
  if constexpr (std::endian::native == std::endian::big) u = byteSwap(u);
  return u;
}

template <typename U>
void storeLittle(std::byte* p, U u) noexcept {
  if constexpr (std::endian::native == std::endian::big) u = byteSwap(u);
  std::memcpy(p, &u, sizeof(U));
}

/// Appends \p u to \p out.
template <typename U>
void appendLittle(std::vector<std::byte>& out, U u) {
  const std::size_t at = out.size();
  // resize + store: GCC 12 warns falsely on an insert into an empty vector
  out.resize(at + sizeof(U));
  storeLittle(out.data() + at, u);
}

}  // namespace lora::detail
