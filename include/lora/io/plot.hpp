#pragma once
/// \file plot.hpp
/// \brief Charts drawn by gnuplot (Debian package gnuplot-nox), for the library, the `lora` tool
/// and the examples. Without gnuplot the data is written as CSV instead and stderr says so in one
/// line; nothing fails.

#include <filesystem>
#include <string>
#include <vector>

namespace lora::io {

/// How a Series is drawn.
enum class SeriesStyle {
  LinesPoints,  ///< a line with a dot at each point (the default)
  Lines,        ///< a line only
  Points,       ///< black markers only, a different shape for each Points series of a panel
  Reference,    ///< a thin dashed grey line (guides, thresholds), a different dash for each one
};

/// One line of a panel. Lines and LinesPoints series take the colours of a 12-colour cycle in
/// panel order, so the k-th such series has the same colour in every panel.
struct Series {
  std::string title;
  std::vector<double> x, y;
  SeriesStyle style = SeriesStyle::LinesPoints;
  bool inKey = true;  ///< listed in the panel's key (the CSV names every series)
};

/// Where a panel's key goes: inside the plot area, or to its right (the panel is then drawn
/// wider, so that the plot area keeps its size).
enum class KeyPosition { TopLeft, TopRight, BottomLeft, BottomRight, OutsideRight };

/// One chart; several panels are drawn side by side. A '\n' in a title breaks the line.
struct Panel {
  std::string title, xLabel, yLabel;
  bool logX = false, logY = false;
  std::vector<Series> series;
  KeyPosition key = KeyPosition::TopLeft;
};

/// Throws lora::Error unless \p file ends in .png or .svg (check before printing anything).
void requirePlotFile(const std::filesystem::path& file);

/// Draws \p panels into \p file (.png or .svg, else lora::Error) with gnuplot: the command in
/// $LORA_GNUPLOT, or `gnuplot`. When it cannot run, writes every series to `<file>.csv`
/// (panel,series,x,y; titles quoted, line breaks as spaces) and says so on stderr. Returns the
/// file written.
///
/// Empty series are left out of the chart; a panel without data says "no data". On a log axis,
/// points <= 0 are not drawn (gnuplot skips them).
std::filesystem::path plotOrCsv(const std::vector<Panel>& panels,
                                const std::filesystem::path& file);

}  // namespace lora::io
