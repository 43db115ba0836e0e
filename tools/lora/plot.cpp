#include "plot.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "lora/detail/atomic_file.hpp"
#include "lora/error.hpp"
#include "lora/io/peft_writer.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhere = "plot";

// A gnuplot single-quoted string: '' stands for one quote.
std::string gpString(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A POSIX shell single-quoted word.
std::string shWord(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string script(const std::vector<Panel>& panels, const std::string& terminal,
                   const fs::path& output) {
  std::ostringstream s;
  s << "set terminal " << terminal << " size " << 520 * panels.size() << ",420\n";
  s << "set output " << gpString(output.string()) << "\n";
  for (std::size_t p = 0; p < panels.size(); ++p)
    for (std::size_t k = 0; k < panels[p].series.size(); ++k) {
      const Series& ser = panels[p].series[k];
      s << "$d" << p << "_" << k << " << EOD\n";
      for (std::size_t i = 0; i < ser.x.size(); ++i)
        s << fmt::format("{:.17g} {:.17g}\n", ser.x[i], ser.y[i]);
      s << "EOD\n";
    }
  s << "set multiplot layout 1," << panels.size() << "\nset grid\nset key top left\n";
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    s << "set title " << gpString(panel.title) << "\nset xlabel " << gpString(panel.xLabel)
      << "\nset ylabel " << gpString(panel.yLabel) << "\nunset logscale\n";
    if (panel.logX) s << "set logscale x 2\n";
    if (panel.logY) s << "set logscale y 10\n";
    s << "plot ";
    for (std::size_t k = 0; k < panel.series.size(); ++k)
      s << (k ? ", " : "") << "$d" << p << "_" << k
        << " using 1:2 with linespoints lw 2 pt 7 title " << gpString(panel.series[k].title);
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
        out += fmt::format("\"{}\",\"{}\",{:.17g},{:.17g}\n", panel.title, ser.title, ser.x[i],
                           ser.y[i]);
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
    fs::rename(drawn, file, ec);
    if (ec) {
      fs::remove(drawn, ec);
      detail::fail(kWhere, "expected to write '{}', got an error: {}", file.string(), ec.message());
    }
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

}  // namespace lora::cli
