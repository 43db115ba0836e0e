#include "lora/io/plot.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "lora/detail/atomic_file.hpp"
#include "lora/error.hpp"
#include "lora/io/peft_writer.hpp"

namespace lora::io {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhere = "plot";

// A gnuplot string expression: single-quoted parts ('' stands for one quote), joined by "\n"
// where \p s breaks the line.
std::string gpString(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n')
      out += "' . \"\\n\" . '";
    else
      out += c;
  }
  return out + "'";
}

// A CSV field: quoted, quotes doubled, line breaks as spaces.
std::string csvField(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' ? ' ' : c);
  return out + "\"";
}

// A POSIX shell single-quoted word.
std::string shWord(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Line colours, in panel order (the first is gnuplot's first default colour).
constexpr std::array<const char*, 12> kColours{"#9400d3", "#009e73", "#56b4e9", "#e69f00",
                                               "#0072b2", "#e51e10", "#8c564b", "#e377c2",
                                               "#bcbd22", "#17becf", "#556b2f", "#c71585"};
constexpr std::array<int, 6> kMarkers{6, 8, 4, 12, 10, 14};  // open circle, triangle, square, ...

const char* keyWords(KeyPosition key) {
  switch (key) {
    case KeyPosition::TopRight:
      return "inside top right";
    case KeyPosition::BottomLeft:
      return "inside bottom left";
    case KeyPosition::BottomRight:
      return "inside bottom right";
    case KeyPosition::OutsideRight:
      return "outside right top vertical font ',10' samplen 2";
    case KeyPosition::TopLeft:
      break;
  }
  return "inside top left";
}

// The points of \p ser that the panel's axes can show (> 0 on a log axis).
std::vector<std::pair<double, double>> drawable(const Panel& panel, const Series& ser) {
  std::vector<std::pair<double, double>> out;
  const std::size_t n = std::min(ser.x.size(), ser.y.size());
  for (std::size_t i = 0; i < n; ++i) {
    if ((panel.logX && !(ser.x[i] > 0)) || (panel.logY && !(ser.y[i] > 0))) continue;
    out.emplace_back(ser.x[i], ser.y[i]);
  }
  return out;
}

std::string script(const std::vector<Panel>& panels, const std::string& terminal,
                   const fs::path& output) {
  std::ostringstream s;
  // Panels side by side, 520 x 420 pixels each, plus room for a key to the right of one.
  constexpr int kWidth = 520, kHeight = 420, kKeyWidth = 240;
  std::vector<int> widths;
  for (const Panel& panel : panels)
    widths.push_back(kWidth + (panel.key == KeyPosition::OutsideRight ? kKeyWidth : 0));
  const int total = std::max(1, std::accumulate(widths.begin(), widths.end(), 0));
  // noenhanced: titles are shown as written (module names hold underscores).
  s << "set terminal " << terminal << " noenhanced size " << total << "," << kHeight << "\n";
  s << "set output " << gpString(output.string()) << "\n";
  // drawn[p][k]: series k of panel p has a data block.
  std::vector<std::vector<bool>> drawn(panels.size());
  for (std::size_t p = 0; p < panels.size(); ++p)
    for (std::size_t k = 0; k < panels[p].series.size(); ++k) {
      const auto points = drawable(panels[p], panels[p].series[k]);
      drawn[p].push_back(!points.empty());
      if (points.empty()) continue;
      s << "$d" << p << "_" << k << " << EOD\n";
      for (const auto& [x, y] : points) s << fmt::format("{:.17g} {:.17g}\n", x, y);
      s << "EOD\n";
    }
  s << "set multiplot\nset grid\n";
  for (std::size_t p = 0, left = 0; p < panels.size(); left += widths[p], ++p) {
    const Panel& panel = panels[p];
    s << fmt::format("set origin {:.6f},0\nset size {:.6f},1\n", double(left) / total,
                     double(widths[p]) / total);
    s << "set title " << gpString(panel.title) << "\nset xlabel " << gpString(panel.xLabel)
      << "\nset ylabel " << gpString(panel.yLabel) << "\nunset logscale\nset key default\nset key "
      << keyWords(panel.key) << "\n";
    std::vector<std::string> items;
    std::size_t lines = 0, markers = 0, references = 0;
    for (std::size_t k = 0; k < panel.series.size(); ++k) {
      const Series& ser = panel.series[k];
      std::string style;
      switch (ser.style) {
        case SeriesStyle::LinesPoints:
        case SeriesStyle::Lines:
          style = fmt::format("{} lw 2 lc rgb '{}'",
                              ser.style == SeriesStyle::Lines ? "lines" : "linespoints pt 7",
                              kColours[lines % kColours.size()]);
          ++lines;
          break;
        case SeriesStyle::Points:
          style = fmt::format("points pt {} ps 1.5 lw 1.5 lc rgb 'black'",
                              kMarkers[markers % kMarkers.size()]);
          ++markers;
          break;
        case SeriesStyle::Reference:
          style = fmt::format("lines lw 1.5 dt {} lc rgb 'gray40'", 2 + references % 4);
          ++references;
          break;
      }
      if (!drawn[p][k]) continue;
      items.push_back(fmt::format("$d{}_{} using 1:2 with {} {}", p, k, style,
                                  ser.inKey ? "title " + gpString(ser.title) : "notitle"));
    }
    if (items.empty()) {
      s << "set label 1 'no data' at graph 0.5, graph 0.5 center\n"
        << "plot [0:1] [0:1] NaN notitle\nunset label 1\n";
      continue;
    }
    if (panel.logX) s << "set logscale x 2\n";
    if (panel.logY) s << "set logscale y 10\n";
    s << "plot ";
    for (std::size_t i = 0; i < items.size(); ++i) s << (i ? ", " : "") << items[i];
    s << "\n";
  }
  s << "unset multiplot\nset output\n";
  return s.str();
}

std::string csv(const std::vector<Panel>& panels) {
  std::string out = "panel,series,x,y\n";
  for (const Panel& panel : panels)
    for (const Series& ser : panel.series)
      for (std::size_t i = 0; i < ser.x.size(); ++i)
        out += fmt::format("{},{},{:.17g},{:.17g}\n", csvField(panel.title), csvField(ser.title),
                           ser.x[i], ser.y[i]);
  return out;
}

std::string firstLine(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

void requirePlotFile(const fs::path& file) {
  const std::string ext = file.extension().string();
  if (ext != ".png" && ext != ".svg")
    detail::fail(kWhere, "expected a plot file ending in .png or .svg, got '{}'", file.string());
}

fs::path plotOrCsv(const std::vector<Panel>& panels, const fs::path& file) {
  requirePlotFile(file);
  const std::string ext = file.extension().string();
  const std::string terminal = ext == ".png" ? "pngcairo" : "svg";
  const char* env = std::getenv("LORA_GNUPLOT");
  const std::string gnuplot = env != nullptr && *env != '\0' ? env : "gnuplot";

  // gnuplot draws into a temporary file next to the target, renamed over it when complete.
  const std::string tag = detail::uniqueTag();
  const fs::path folder = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  const fs::path drawn = folder / fmt::format(".{}.{}{}", file.filename().string(), tag, ext);
  const fs::path gp = fs::temp_directory_path() / fmt::format("lora-plot-{}.gp", tag);
  const fs::path log = fs::temp_directory_path() / fmt::format("lora-plot-{}.log", tag);
  writeFileAtomic(gp, script(panels, terminal, drawn));
  const std::string command =
      fmt::format("{} {} >{} 2>&1", shWord(gnuplot), shWord(gp.string()), shWord(log.string()));
  const int rc = std::system(command.c_str());
  std::error_code ec;
  const bool ok = rc == 0 && fs::exists(drawn, ec) && fs::file_size(drawn, ec) > 0;
  std::string why = ok ? std::string() : firstLine(log);
  fs::remove(gp, ec);
  fs::remove(log, ec);
  if (ok) {
    // As every file LoRA++ writes: synced, renamed over the target, the folder synced.
    const int fd = ::open(drawn.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (synced) fs::rename(drawn, file, ec);
    if (!synced || ec) {
      const std::string reason = synced ? ec.message() : detail::errnoText(errno);
      fs::remove(drawn, ec);
      detail::fail(kWhere, "expected to write '{}', got an error: {}", file.string(), reason);
    }
    detail::syncFolder(folder, kWhere);
    return file;
  }
  fs::remove(drawn, ec);
  fs::path data = file;
  data += ".csv";
  writeFileAtomic(data, csv(panels));
  if (why.empty()) why = fmt::format("exit status {}", rc);
  fmt::print(
      stderr,
      "lora: could not draw '{}' with gnuplot ({}; install gnuplot-nox): wrote the data to '{}'\n",
      file.string(), why, data.string());
  return data;
}

}  // namespace lora::io
