#pragma once
// What the `lora` subcommands may write: never one of their own inputs (compared by device and
// inode, so no spelling or symlink gets around it, --force or not), never over an existing file
// or into a non-empty folder unless --force is given; with --force only the files the command
// writes are replaced, others in the folder stay.

#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lora::cli {

/// Adds --force ("replace an existing output") to \p cmd.
void addForceFlag(CLI::App* cmd, bool& force);

/// Fails (lora::Error naming \p where) unless \p file may be written: not one of \p inputs (files,
/// or folders whose files are all inputs), not an existing file unless \p force, in an existing
/// folder, and not itself a folder. \p what names the option in the message ("--out").
void checkOutputFile(const char* where, const std::string& what, const std::filesystem::path& file,
                     const std::vector<std::filesystem::path>& inputs, bool force);

/// The same for an output folder that will receive \p written (file names): not one of
/// \p inputs' folders or files, none of its \p written files one of \p inputs, not a non-empty
/// folder unless \p force.
void checkOutputFolder(const char* where, const std::string& what,
                       const std::filesystem::path& folder, const std::vector<std::string>& written,
                       const std::vector<std::filesystem::path>& inputs, bool force);

/// The files of a PEFT adapter folder (the folder itself, its config and its tensors), or a GGUF
/// adapter file itself, as inputs.
std::vector<std::filesystem::path> adapterInputs(const std::filesystem::path& dir);

}  // namespace lora::cli
