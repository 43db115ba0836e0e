#pragma once
// Charts for the `lora` tool, drawn by gnuplot (Debian package gnuplot-nox). Without gnuplot the
// data is written as CSV instead and stderr says so in one line; nothing fails.

#include <filesystem>
#include <string>
#include <vector>

namespace lora::cli {

/// One line of a panel.
struct Series {
  std::string title;
  std::vector<double> x, y;
};

/// One chart; several panels are drawn side by side.
struct Panel {
  std::string title, xLabel, yLabel;
  bool logX = false, logY = false;
  std::vector<Series> series;
};

/// Throws lora::Error unless \p file ends in .png or .svg (check before printing anything).
void requirePlotFile(const std::filesystem::path& file);

/// Draws \p panels into \p file (.png or .svg, else lora::Error) with gnuplot: the command in
/// $LORA_GNUPLOT, or `gnuplot`. When it cannot run, writes every series to `<file>.csv`
/// (panel,series,x,y) and says so on stderr. Returns the file written.
std::filesystem::path plotOrCsv(const std::vector<Panel>& panels,
                                const std::filesystem::path& file);

}  // namespace lora::cli
