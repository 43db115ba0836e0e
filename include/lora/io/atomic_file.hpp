#pragma once
/// \file atomic_file.hpp
/// \brief Writing a text file atomically and durably, as every file LoRA++ writes: a temporary
/// file created exclusively in the same folder, written, flushed, synced to disk and closed
/// (each step checked), renamed over the target, and the folder synced. A failed write leaves an
/// existing file untouched and removes the temporary file. (The same writer as the adapters',
/// lora::detail::AtomicFile; the function keeps its namespace, lora::train, where its first user,
/// the monitor, is.)
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
