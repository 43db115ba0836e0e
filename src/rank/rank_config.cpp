#include "lora/rank/rank_config.hpp"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/io/atomic_file.hpp"

namespace lora::rank {
namespace {

std::string shown(const nlohmann::ordered_json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

[[noreturn]] void bad(std::string_view where, std::string_view source, std::string_view field,
                      std::string_view expected, const std::string& got) {
  if (source.empty()) detail::fail(where, "field '{}': expected {}, got {}", field, expected, got);
  detail::fail(where, "{}: field '{}': expected {}, got {}", source, field, expected, got);
}

}  // namespace

void RankManagerConfig::validate() const {
  check("RankManagerConfig::validate", "");
}

RankManagerConfig RankManagerConfig::fromJson(const nlohmann::ordered_json& j,
                                              std::string_view source) {
  return fromJsonImpl(j, source, "RankManagerConfig::fromJson");
}

RankManagerConfig RankManagerConfig::parse(std::string_view text, std::string_view source) {
  return parseImpl(text, source, "RankManagerConfig::parse");
}

RankManagerConfig RankManagerConfig::load(const std::filesystem::path& path) {
  constexpr const char* where = "RankManagerConfig::load";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return RankManagerConfig{};
  std::ifstream in(path, std::ios::binary);
  if (!in)
    detail::fail(where, "expected a readable file {}, got one that cannot be opened",
                 path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parseImpl(text.str(), path.string(), where);
}

nlohmann::ordered_json RankManagerConfig::toJson() const {
  nlohmann::ordered_json j;
  j["min_rank"] = minRank;
  j["max_rank"] = maxRank;
  j["initial_rank"] = initialRank;
  j["adjustment_threshold"] = adjustmentThreshold;
  j["patience"] = patience;
  j["layer_specific_ranks"] = nlohmann::ordered_json::object();
  for (const auto& [name, r] : layerSpecificRanks) j["layer_specific_ranks"][name] = r;
  j["initialization_method"] = initializationMethod;
  j["auto_adjustment"] = autoAdjustment;
  j["stagnation_slope"] = stagnationSlope;
  j["selector"] = selector;
  return j;
}

void RankManagerConfig::save(const std::filesystem::path& path) const {
  check("RankManagerConfig::save", "");
  train::writeFileAtomically(path, toJson().dump(2) + "\n", "RankManagerConfig::save");
}

void RankManagerConfig::check(std::string_view where, std::string_view source) const {
  if (minRank < 1) bad(where, source, "min_rank", "an integer >= 1", std::to_string(minRank));
  if (maxRank < minRank)
    bad(where, source, "max_rank", fmt::format("an integer >= min_rank ({})", minRank),
        std::to_string(maxRank));
  if (initialRank < minRank || initialRank > maxRank)
    bad(where, source, "initial_rank",
        fmt::format("an integer in [min_rank, max_rank] = [{}, {}]", minRank, maxRank),
        std::to_string(initialRank));
  if (!(std::isfinite(adjustmentThreshold) && adjustmentThreshold >= 0))
    bad(where, source, "adjustment_threshold", "a finite number >= 0",
        fmt::format("{}", adjustmentThreshold));
  if (patience < 3)
    bad(where, source, "patience", "an integer >= 3 (a trend needs 3 records)",
        std::to_string(patience));
  for (std::size_t i = 0; i < layerSpecificRanks.size(); ++i) {
    const auto& [name, r] = layerSpecificRanks[i];
    if (name.empty()) bad(where, source, "layer_specific_ranks", "non-empty layer names", "\"\"");
    for (std::size_t k = 0; k < i; ++k)
      if (layerSpecificRanks[k].first == name)
        bad(where, source, "layer_specific_ranks", "distinct layer names",
            fmt::format("\"{}\" twice", name));
    if (r < minRank || r > maxRank)
      bad(where, source, fmt::format("layer_specific_ranks.{}", name),
          fmt::format("an integer in [min_rank, max_rank] = [{}, {}]", minRank, maxRank),
          std::to_string(r));
  }
  if (initializationMethod.empty())
    bad(where, source, "initialization_method", "a non-empty string", "\"\"");
  if (!(std::isfinite(stagnationSlope) && stagnationSlope >= 0))
    bad(where, source, "stagnation_slope", "a finite number >= 0",
        fmt::format("{}", stagnationSlope));
  bool known = false;
  for (const auto& s : selectors()) known = known || s == selector;
  if (!known)
    bad(where, source, "selector",
        "one of \"article_trend\", \"slope_plateau\", \"article_loss_plateau\"",
        fmt::format("\"{}\"", selector));
}

RankManagerConfig RankManagerConfig::parseImpl(std::string_view text, std::string_view source,
                                               std::string_view where) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    detail::fail(where, "{}: expected valid JSON, got a syntax error at byte {}", source, e.byte);
  }
  return fromJsonImpl(j, source, where);
}

RankManagerConfig RankManagerConfig::fromJsonImpl(const nlohmann::ordered_json& j,
                                                  std::string_view source, std::string_view where) {
  if (!j.is_object()) detail::fail(where, "{}: expected a JSON object, got {}", source, shown(j));
  RankManagerConfig c;
  const auto integer = [&](const std::string& key, const nlohmann::ordered_json& v) {
    if (!v.is_number_integer()) bad(where, source, key, "an integer", shown(v));
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > 1000000000ULL)
      bad(where, source, key, "an integer <= 1e9", shown(v));
    return v.get<std::int64_t>();
  };
  const auto number = [&](const std::string& key, const nlohmann::ordered_json& v) {
    if (!v.is_number()) bad(where, source, key, "a number", shown(v));
    return v.get<double>();
  };
  const auto string = [&](const std::string& key, const nlohmann::ordered_json& v) {
    if (!v.is_string()) bad(where, source, key, "a string", shown(v));
    return v.get<std::string>();
  };
  for (const auto& [key, v] : j.items()) {
    if (key == "min_rank") {
      c.minRank = integer(key, v);
    } else if (key == "max_rank") {
      c.maxRank = integer(key, v);
    } else if (key == "initial_rank") {
      c.initialRank = integer(key, v);
    } else if (key == "adjustment_threshold") {
      c.adjustmentThreshold = number(key, v);
    } else if (key == "patience") {
      const auto p = integer(key, v);
      if (p < 0) bad(where, source, key, "an integer >= 3 (a trend needs 3 records)", shown(v));
      c.patience = static_cast<std::size_t>(p);
    } else if (key == "layer_specific_ranks") {
      if (!v.is_object()) bad(where, source, key, "an object of layer name -> rank", shown(v));
      c.layerSpecificRanks.clear();
      for (const auto& [name, r] : v.items())
        c.layerSpecificRanks.emplace_back(name, integer(key + "." + name, r));
    } else if (key == "initialization_method") {
      c.initializationMethod = string(key, v);
    } else if (key == "auto_adjustment") {
      if (!v.is_boolean()) bad(where, source, key, "true or false", shown(v));
      c.autoAdjustment = v.get<bool>();
    } else if (key == "stagnation_slope") {
      c.stagnationSlope = number(key, v);
    } else if (key == "selector") {
      c.selector = string(key, v);
    } else {
      detail::fail(where,
                   "{}: expected only the fields min_rank, max_rank, initial_rank, "
                   "adjustment_threshold, patience, layer_specific_ranks, initialization_method, "
                   "auto_adjustment, stagnation_slope, selector; got an unknown field '{}'",
                   source, key);
    }
  }
  c.check(where, source);
  return c;
}

}  // namespace lora::rank
