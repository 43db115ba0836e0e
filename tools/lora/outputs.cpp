#include "outputs.hpp"

#include <sys/stat.h>

#include <optional>
#include <system_error>
#include <utility>

#include "lora/error.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;

struct FileId {
  dev_t device;
  ino_t inode;
  bool operator==(const FileId&) const = default;
};

// The device and inode \p p resolves to (symlinks followed), if it exists.
std::optional<FileId> idOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// The input \p target is, if any.
const fs::path* sameAsInput(const fs::path& target, const std::vector<fs::path>& inputs) {
  const std::optional<FileId> id = idOf(target);
  if (!id) return nullptr;
  for (const fs::path& in : inputs)
    if (idOf(in) == id) return &in;
  return nullptr;
}

}  // namespace

void addForceFlag(CLI::App* cmd, bool& force) {
  cmd->add_flag("--force", force,
                "replace an existing output (never an input); other files in an output folder "
                "stay");
}

void checkOutputFile(const char* where, const std::string& what, const fs::path& file,
                     const std::vector<fs::path>& inputs, bool force) {
  if (const fs::path* in = sameAsInput(file, inputs))
    detail::fail(where,
                 "expected {} to be a new file, not one of the inputs, got '{}' (the same file "
                 "as '{}')",
                 what, file.string(), in->string());
  std::error_code ec;
  const fs::path folder = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (!fs::is_directory(folder, ec))
    detail::fail(where, "expected {} in an existing folder, got '{}' (no folder '{}')", what,
                 file.string(), folder.string());
  if (fs::is_directory(file, ec))
    detail::fail(where, "expected {} to name a file, got the folder '{}'", what, file.string());
  if (!force && fs::exists(fs::symlink_status(file, ec)))
    detail::fail(where,
                 "expected {} to be a new file, got the existing '{}' (pass --force to "
                 "replace it)",
                 what, file.string());
}

void checkOutputFolder(const char* where, const std::string& what, const fs::path& folder,
                       const std::vector<std::string>& written, const std::vector<fs::path>& inputs,
                       bool force) {
  if (const fs::path* in = sameAsInput(folder, inputs))
    detail::fail(where,
                 "expected {} to be a folder other than the inputs, got '{}' (the same "
                 "folder as '{}')",
                 what, folder.string(), in->string());
  for (const std::string& name : written) {
    if (const fs::path* in = sameAsInput(folder / name, inputs))
      detail::fail(where,
                   "expected {} to be a folder other than the inputs, got '{}', whose '{}' "
                   "is the input '{}'",
                   what, folder.string(), name, in->string());
  }
  std::error_code ec;
  if (fs::exists(folder, ec) && !fs::is_directory(folder, ec))
    detail::fail(where, "expected {} to be a folder, got the file '{}'", what, folder.string());
  if (!force && fs::is_directory(folder, ec) && !fs::is_empty(folder, ec))
    detail::fail(where,
                 "expected {} to be a new or empty folder, got '{}', which holds files "
                 "(pass --force to replace the adapter files in it)",
                 what, folder.string());
}

std::vector<fs::path> adapterInputs(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) return {dir};  // a GGUF adapter file
  return {dir, dir / "adapter_config.json", dir / "adapter_model.safetensors",
          dir / "adapter_model.bin"};
}

}  // namespace lora::cli
