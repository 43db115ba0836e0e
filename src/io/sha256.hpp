#pragma once
// Internal: SHA-256 (FIPS 180-4), incremental, for the hashes kohya's tools store in a LoRA file's
// metadata (sshs_model_hash, sshs_legacy_hash).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace lora::detail {

class Sha256 {
 public:
  Sha256();
  /// Appends \p bytes to the message.
  void update(std::span<const std::byte> bytes);
  /// The digest of everything appended, as 64 lowercase hex digits; the object is then spent
  /// (construct a new one for another message).
  std::string hexDigest();

 private:
  void compress(const unsigned char* block);       // the portable rounds
  void compressBlock(const unsigned char* block);  // SHA extensions where the CPU has them

  std::array<std::uint32_t, 8> m_state;
  std::array<unsigned char, 64> m_buffer{};
  std::size_t m_buffered = 0;
  std::uint64_t m_length = 0;  // bytes
};

}  // namespace lora::detail
