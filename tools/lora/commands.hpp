#pragma once
// The `lora` tool's subcommands. Each adds itself to the app; its callback runs the command and
// throws lora::Error on bad input (main turns that into one line and a non-zero exit).

#include <CLI/CLI.hpp>

namespace lora::cli {

void addRankReplay(CLI::App& app);

}  // namespace lora::cli
