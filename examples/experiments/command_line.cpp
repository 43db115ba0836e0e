#include "command_line.hpp"

#include <cstdint>
#include <numeric>

#include <CLI/CLI.hpp>

namespace lora::experiments {

CommandLine::CommandLine(const std::string& description)
    : m_app(std::make_unique<CLI::App>(description)) {}
CommandLine::~CommandLine() = default;

void CommandLine::option(const std::string& name, int& value, const std::string& help,
                         bool positive) {
  CLI::Option* o = m_app->add_option(name, value, help);
  if (positive) o->check(CLI::PositiveNumber);
}
void CommandLine::option(const std::string& name, std::ptrdiff_t& value, const std::string& help,
                         bool positive) {
  CLI::Option* o = m_app->add_option(name, value, help);
  if (positive) o->check(CLI::PositiveNumber);
}
void CommandLine::option(const std::string& name, double& value, const std::string& help) {
  m_app->add_option(name, value, help);
}
void CommandLine::option(const std::string& name, std::string& value, const std::string& help) {
  m_app->add_option(name, value, help);
}
void CommandLine::option(const std::string& name, std::filesystem::path& value,
                         const std::string& help) {
  m_app->add_option(name, value, help);
}
void CommandLine::list(const std::string& name, std::vector<std::string>& values,
                       const std::string& help, const std::vector<std::string>& allowed) {
  m_app->add_option(name, values, help)->delimiter(',')->check(CLI::IsMember(allowed));
}
void CommandLine::flag(const std::string& name, bool& value, const std::string& help) {
  m_app->add_flag(name, value, help);
}

std::optional<int> CommandLine::parse(int argc, char** argv) {
  try {
    m_app->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return m_app->exit(e);
  }
  return std::nullopt;
}

void CommonCommandLine::addTo(CommandLine& app) {
  app.option("--seeds", seeds, "seeds per strategy (1..N)", true);
  app.option("--steps", adapt.steps, "adaptation steps per run", true);
  app.option("--pretrain-steps", pretrainSteps, "pretraining steps", true);
  app.option("--lr", study.lr, "AdamW learning rate of the LoRA strategies");
  app.list("--only", study.only, "studies to run: comparison, rslora, pissa",
           {"comparison", "rslora", "pissa"});
  app.option("--out", out, "folder for report.txt, report.json and the charts ('' : none)");
  app.flag("--quiet", adapt.quiet, "no progress bars");
}

void CommonCommandLine::finish() {
  study.seeds.resize(static_cast<std::size_t>(seeds));
  std::iota(study.seeds.begin(), study.seeds.end(), std::uint64_t{1});
  study.out = out;
}

}  // namespace lora::experiments
