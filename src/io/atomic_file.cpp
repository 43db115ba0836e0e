#include "lora/detail/atomic_file.hpp"
#include "lora/io/atomic_file.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <ios>
#include <string>
#include <string_view>
#include <system_error>

#if __has_include(<unistd.h>)
#include <fcntl.h>
#include <unistd.h>
#define LORA_HAVE_UNISTD 1
#endif

#include <fmt/format.h>

#include "lora/error.hpp"

namespace lora::detail {

namespace fs = std::filesystem;

std::string errnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string uniqueTag() {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t salt =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#ifdef LORA_HAVE_UNISTD
  salt ^= static_cast<std::uint64_t>(::getpid()) << 32;
#endif
  return fmt::format("{:016x}", salt ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ull));
}

AtomicFile::AtomicFile(const fs::path& target, std::string_view where)
    : m_target(target), m_where(where) {
  if (!target.has_filename()) fail(m_where, "expected a file path, got '{}'", target.string());
  std::error_code ec;
  if (fs::is_directory(target, ec))
    fail(m_where, "expected a file path, got the folder '{}'", target.string());
  // Created exclusively ("x"), so nothing is clobbered, even by a writer racing for the name.
  int err = 0;
  for (int attempt = 0; attempt < 16 && m_file == nullptr; ++attempt) {
    m_temp =
        target.parent_path() / fmt::format(".{}.{}.tmp", target.filename().string(), uniqueTag());
    errno = 0;
    m_file = std::fopen(m_temp.string().c_str(), "wbx");
    err = errno;
    if (m_file == nullptr && err != EEXIST) break;
  }
  if (m_file == nullptr)
    fail(m_where, "expected a writable folder for '{}', got an error creating '{}': {}",
         target.string(), m_temp.string(), errnoText(err));
}

AtomicFile::~AtomicFile() {
  if (m_file != nullptr) std::fclose(m_file);
  if (!m_committed) {
    std::error_code ec;
    fs::remove(m_temp, ec);
  }
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (bytes == 0) return;
  errno = 0;
  if (std::fwrite(data, 1, bytes, m_file) != bytes) {
    const int e = errno;
    fail(m_where, "expected to write {} bytes to '{}', got an error: {}", bytes, m_temp.string(),
         errnoText(e));
  }
}

void AtomicFile::commit() {
  errno = 0;
  if (std::fflush(m_file) != 0) {
    const int e = errno;
    fail(m_where, "expected to flush '{}', got an error: {}", m_temp.string(), errnoText(e));
  }
#ifdef LORA_HAVE_UNISTD
  if (::fsync(::fileno(m_file)) != 0) {
    const int e = errno;
    fail(m_where, "expected to sync '{}' to disk, got an error: {}", m_temp.string(), errnoText(e));
  }
#endif
  std::FILE* closing = m_file;
  m_file = nullptr;
  errno = 0;
  if (std::fclose(closing) != 0) {
    const int e = errno;
    fail(m_where, "expected to close '{}', got an error: {}", m_temp.string(), errnoText(e));
  }
  std::error_code ec;
  fs::rename(m_temp, m_target, ec);
  if (ec)
    fail(m_where, "expected to replace '{}' with the new file, got an error: {}", m_target.string(),
         ec.message());
  m_committed = true;
  syncFolder(m_target.parent_path(), m_where);
}

void syncFolder(const fs::path& folder, std::string_view where) {
#ifdef LORA_HAVE_UNISTD
  // The rename is durable once the folder's entry is on disk: fsync the folder too. Filesystems
  // that cannot sync a folder say EINVAL (nothing more to do there).
  const fs::path dir = folder.empty() ? fs::path(".") : folder;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    fail(where, "expected to open the folder '{}' to sync it, got an error: {}", dir.string(),
         errnoText(e));
  }
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0 && e != EINVAL)
    fail(where, "expected to sync the folder '{}' to disk, got an error: {}", dir.string(),
         errnoText(e));
#else
  (void)folder;
  (void)where;
#endif
}

}  // namespace lora::detail

namespace lora::train {

void writeFileAtomically(const std::filesystem::path& path, std::string_view content,
                         std::string_view where) {
  detail::AtomicFile file(path, where);
  file.write(content.data(), content.size());
  file.commit();
}

}  // namespace lora::train
