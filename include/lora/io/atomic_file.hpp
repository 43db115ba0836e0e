#pragma once
/// \file atomic_file.hpp
/// \brief Writing a text file atomically: a temporary file in the same folder, written, flushed
/// and closed, then renamed over the target. A failed write leaves an existing file untouched and
/// removes the temporary file.
///
/// The function keeps its namespace, lora::train, where its first user (the monitor) is. The
/// adapter writers use another writer, lora::detail::AtomicFile (lora/detail/atomic_file.hpp).
///
/// \code
/// lora::train::writeFileAtomically("history.csv", csvText, "Monitor::writeCsv");
/// \endcode

#include <filesystem>
#include <string_view>

namespace lora::train {

/// Writes \p content to \p path atomically; throws lora::Error (from \p where) naming the path.
void writeFileAtomically(const std::filesystem::path& path, std::string_view content,
                         std::string_view where);

}  // namespace lora::train
