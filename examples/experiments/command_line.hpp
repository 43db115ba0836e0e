#pragma once
// The command line of the experiment programs: options bound to variables, parsed by CLI11 in
// command_line.cpp. CLI11 is header-only and costs about 10 s of compile time in every
// translation unit that uses it; behind this class it is compiled once, in lora_experiments.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "studies.hpp"

namespace CLI {
class App;
}  // namespace CLI

namespace lora::experiments {

/// Options bound to variables; a variable keeps its value when its option is not given.
class CommandLine {
 public:
  explicit CommandLine(const std::string& description);
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  /// `name VALUE`; with \p positive the value must be > 0.
  void option(const std::string& name, int& value, const std::string& help, bool positive = false);
  /// \copydoc option(const std::string&, int&, const std::string&, bool)
  void option(const std::string& name, std::ptrdiff_t& value, const std::string& help,
              bool positive = false);
  void option(const std::string& name, double& value, const std::string& help);
  void option(const std::string& name, std::string& value, const std::string& help);
  void option(const std::string& name, std::filesystem::path& value, const std::string& help);
  /// `name a,b,...`, each one of \p allowed.
  void list(const std::string& name, std::vector<std::string>& values, const std::string& help,
            const std::vector<std::string>& allowed);
  /// `name` sets \p value to true.
  void flag(const std::string& name, bool& value, const std::string& help);

  /// Parses the arguments: std::nullopt when the program goes on, otherwise the code it exits
  /// with (0 after --help; non-zero after an error, which CLI11 has printed).
  std::optional<int> parse(int argc, char** argv);

 private:
  std::unique_ptr<CLI::App> m_app;
};

/// The options both experiment programs share, and what they imply.
struct CommonCommandLine {
  int seeds = 3;
  int pretrainSteps = 1000;
  std::string out;
  AdaptOptions adapt;
  StudyOptions study;

  /// Adds --seeds, --steps, --pretrain-steps, --lr, --only, --out and --quiet.
  void addTo(CommandLine& app);
  /// After parsing: seeds 1..N and the output folder go into the study options.
  void finish();
};

}  // namespace lora::experiments
