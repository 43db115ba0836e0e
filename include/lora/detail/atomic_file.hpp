#pragma once
/// \file atomic_file.hpp
/// \brief Internal: a file written next to its target and renamed over it, or not at all.

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace lora::detail {

/// \brief An atomic write: a temporary file created exclusively in the target's folder, written,
/// then flushed, synced to disk, closed and renamed over the target by commit(), which then syncs
/// the folder too (the rename itself is on disk when commit() returns). Destroyed
/// without commit() (an exception on the way), it closes and removes the temporary file, so an
/// earlier file at the target is left as it was and no partial file is left behind. Every
/// failure throws lora::Error that names \p where, the file and the system's reason.
class AtomicFile {
 public:
  AtomicFile(const std::filesystem::path& target, std::string_view where);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* data, std::size_t bytes);
  void commit();

 private:
  std::filesystem::path m_target, m_temp;
  std::string m_where;
  std::FILE* m_file = nullptr;
  bool m_committed = false;
};

/// fsync of a folder, after a rename into it (where names the caller in errors).
void syncFolder(const std::filesystem::path& folder, std::string_view where);
/// The system's text for errno value \p err.
std::string errnoText(int err);
/// A tag no other writer (thread or process) picks at the same time, for temporary names.
std::string uniqueTag();

}  // namespace lora::detail
