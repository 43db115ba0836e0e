#pragma once
/// \file atomic_file.hpp
/// \brief Writing a text file atomically: a temporary file in the same folder, written, flushed
/// and closed, then renamed over the target. A failed write leaves an existing file untouched and
/// removes the temporary file.
///
/// \code
/// lora::train::writeFileAtomically("history.csv", csvText, "Monitor::writeCsv");
/// \endcode

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "lora/error.hpp"

namespace lora::train {

/// Writes \p content to \p path atomically; throws lora::Error (from \p where) naming the path.
inline void writeFileAtomically(const std::filesystem::path& path, std::string_view content,
                                std::string_view where) {
  namespace fs = std::filesystem;
  static std::atomic<std::uint64_t> counter{0};
  const auto stamp =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  fs::path tmp = path;
  tmp += fmt::format(".tmp.{}.{}", stamp, counter.fetch_add(1));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      detail::fail(where, "expected a writable file {}, got one that cannot be opened",
                   tmp.string());
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ignored;
      fs::remove(tmp, ignored);
      detail::fail(where, "expected to write {} bytes to {}, got a write error", content.size(),
                   tmp.string());
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    detail::fail(where, "expected to rename {} to {}, got '{}'", tmp.string(), path.string(),
                 ec.message());
  }
}

}  // namespace lora::train
