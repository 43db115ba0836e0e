// `lora`: inspect and replay what LoRA++ does, from the command line.

#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"lora: LoRA++ command-line tool"};
  app.require_subcommand(1);
  lora::cli::addRankReplay(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "lora: error: {} (see lora --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lora: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
