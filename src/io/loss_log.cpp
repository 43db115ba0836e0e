#include "lora/io/loss_log.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>

#include "lora/error.hpp"

namespace lora {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

template <typename T>
std::optional<T> parseNumber(std::string_view s) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  T value{};
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

}  // namespace

std::vector<LossEntry> readLossLog(std::istream& in, const std::string& sourceName) {
  constexpr const char* where = "readLossLog";
  std::vector<LossEntry> out;
  std::string line;
  long long lineNo = 0;
  std::optional<bool> withSteps;
  bool first = true;
  while (std::getline(in, line)) {
    ++lineNo;
    const std::string_view text = trim(line);
    if (text.empty() || text.front() == '#') continue;
    if (first) {
      first = false;
      std::string lower(text);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "step,loss") {
        withSteps = true;
        continue;
      }
    }
    const std::size_t comma = text.find(',');
    const bool hasStep = comma != std::string_view::npos;
    if (withSteps && *withSteps != hasStep)
      detail::fail(where, "{}:{}: expected {} like the lines before, got '{}'", sourceName, lineNo,
                   *withSteps ? "step,loss" : "a single loss", text);
    withSteps = hasStep;
    LossEntry e;
    std::optional<double> loss;
    if (hasStep) {
      const auto step = parseNumber<long long>(text.substr(0, comma));
      loss = parseNumber<double>(text.substr(comma + 1));
      if (!step || !loss)
        detail::fail(where, "{}:{}: expected a number or step,loss, got '{}'", sourceName, lineNo,
                     text);
      e.step = *step;
      if (!out.empty() && e.step <= out.back().step)
        detail::fail(where, "{}:{}: expected a step above {}, got {}", sourceName, lineNo,
                     out.back().step, e.step);
    } else {
      loss = parseNumber<double>(text);
      if (!loss)
        detail::fail(where, "{}:{}: expected a number or step,loss, got '{}'", sourceName, lineNo,
                     text);
      e.step = static_cast<long long>(out.size());
    }
    if (!std::isfinite(*loss))
      detail::fail(where, "{}:{}: expected a finite loss, got '{}'", sourceName, lineNo, text);
    e.loss = *loss;
    out.push_back(e);
  }
  if (in.bad()) detail::fail(where, "{}: expected a readable stream, got a read error", sourceName);
  return out;
}

}  // namespace lora
