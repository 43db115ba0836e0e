#pragma once
// Test support: running the `lora` binary (LORA_CLI, defined by tests/CMakeLists.txt) as a user
// runs it, with its exit code, stdout and stderr apart; and scratch folders.

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace lora::test {

struct CliResult {
  int status = -1;  ///< exit code, -1 when killed by a signal
  std::string out, err;

  /// The lines of stderr (without the newlines).
  std::vector<std::string> errLines() const {
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

/// A folder of its own under the system's temp folder, removed with everything in it.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    m_path =
        std::filesystem::temp_directory_path() /
        ("lora_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(m_path);
    std::filesystem::create_directories(m_path);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  const std::filesystem::path& path() const { return m_path; }
  std::filesystem::path operator/(const std::string& name) const { return m_path / name; }

 private:
  std::filesystem::path m_path;
};

inline std::string readText(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Single-quotes \p s for the shell.
inline std::string shellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

#ifdef LORA_CLI
/// Runs `lora <args>` (args already quoted as needed), stdin from /dev/null; \p environment,
/// when given, is prefixed as shell assignments (e.g. "LORA_NUM_THREADS=2").
inline CliResult runCli(const std::string& args, const std::string& environment = "") {
  static std::atomic<int> counter{0};
  const auto base = std::filesystem::temp_directory_path() /
                    ("lora_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  const std::string outFile = base.string() + ".out", errFile = base.string() + ".err";
  const std::string cmd = environment + (environment.empty() ? "" : " ") + std::string(LORA_CLI) +
                          " " + args + " </dev/null >" + shellQuote(outFile) + " 2>" +
                          shellQuote(errFile);
  const int raw = std::system(cmd.c_str());
  CliResult r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = readText(outFile);
  r.err = readText(errFile);
  std::filesystem::remove(outFile);
  std::filesystem::remove(errFile);
  return r;
}
#endif  // LORA_CLI

}  // namespace lora::test
