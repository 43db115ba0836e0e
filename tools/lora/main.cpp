// `lora`: inspect and replay what LoRA++ does, from the command line.

#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"

namespace {

// Every error is exactly one line on stderr.
std::string oneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lora: LoRA++ command-line tool"};
  app.require_subcommand(1);
  lora::cli::addRankReplay(app);
  lora::cli::addInspect(app);
  lora::cli::addMerge(app);
  lora::cli::addResize(app);
  lora::cli::addConvertPissa(app);
  lora::cli::addRecommend(app);
  lora::cli::addCapacity(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "lora: error: {} (see lora --help)\n", oneLine(e.what()));
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lora: error: {}\n", oneLine(e.what()));
    return 1;
  } catch (...) {
    fmt::print(stderr, "lora: error: unexpected failure\n");
    return 1;
  }
  return 0;
}
