#pragma once
// The `lora` tool's subcommands. Each adds itself to the app; its callback runs the command and
// throws lora::Error on bad input (main turns that into one line and a non-zero exit).

#include <CLI/CLI.hpp>

namespace lora::cli {

void addRankReplay(CLI::App& app);
void addInspect(CLI::App& app);
void addMerge(CLI::App& app);
void addResize(CLI::App& app);
void addConvertPissa(CLI::App& app);
void addConvert(CLI::App& app);
void addRecommend(CLI::App& app);
void addCapacity(CLI::App& app);

}  // namespace lora::cli
