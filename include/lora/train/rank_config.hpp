#pragma once
/// \file rank_config.hpp
/// \brief train::RankManagerConfig: the rank manager's JSON configuration, with the article's
/// defaults (section 5.1, `ProductionLoRARankManager._load_config`) merged under the user's file.
///
/// Fields (JSON name: type, default — meaning):
/// - `min_rank`: integer >= 1, 2 — lowest rank any decision gives.
/// - `max_rank`: integer >= min_rank, 64 — highest rank any decision gives.
/// - `initial_rank`: integer in [min_rank, max_rank], 8 — a delegated selector's initial rank.
/// - `adjustment_threshold`: number >= 0, 0.02 — unused by the article's own rule (as in the
///   article); the improvement threshold of a delegated selector.
/// - `patience`: integer >= 3, 10 — records in each trend fit; a delegated selector's window or
///   patience.
/// - `layer_specific_ranks`: object name -> integer in [min_rank, max_rank], {} — ranks
///   recommendInitialRanks uses as given.
/// - `initialization_method`: non-empty string, "xavier" — reported with each recommendation.
/// - `auto_adjustment`: boolean, true — false: monitorAndAdjust records nothing, changes nothing.
/// - `stagnation_slope`: number >= 0, 0.001 — |slope| per record under which loss (and accuracy)
///   count as flat (the article hard-codes 0.001).
/// - `selector`: "article_trend", "slope_plateau" or "article_loss_plateau", "article_trend" — the
///   rule monitorAndAdjust uses.
///
/// The last two fields are ours. Loading: a missing file gives the defaults and writes nothing
/// (the article writes its defaults out as a side effect; here save() is an explicit call). The
/// user's fields replace the defaults one by one (the article's `dict.update`). A file that is
/// not JSON, is not an object, has an unknown field, or a field of the wrong type or out of range
/// throws lora::Error naming the file and the field:
/// `RankManagerConfig::load(): cfg.json: field 'patience': expected an integer >= 3, got "ten"`.
///
/// `layer_specific_ranks` keys match a module name exactly or as a dot-separated suffix
/// (`"q_proj"` matches `model.layers.0.self_attn.q_proj`); the longest matching key wins.
///
/// \code
/// auto config = lora::train::RankManagerConfig::load("lora_rank_config.json");
/// config.patience = 20;
/// config.save("lora_rank_config.json");   // explicit, atomic
/// \endcode

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/train/atomic_file.hpp"

namespace lora::train {

/// \brief The rank manager's configuration (see the file comment for each field).
struct RankManagerConfig {
  Eigen::Index minRank = 2;
  Eigen::Index maxRank = 64;
  Eigen::Index initialRank = 8;
  double adjustmentThreshold = 0.02;
  std::size_t patience = 10;
  /// Module name or dotted suffix -> rank, in file order.
  std::vector<std::pair<std::string, Eigen::Index>> layerSpecificRanks;
  std::string initializationMethod = "xavier";
  bool autoAdjustment = true;
  double stagnationSlope = 0.001;
  std::string selector = "article_trend";

  /// The names `selector` accepts.
  static const std::vector<std::string>& selectors() {
    static const std::vector<std::string> names = {"article_trend", "slope_plateau",
                                                   "article_loss_plateau"};
    return names;
  }

  /// Throws lora::Error naming the first field that is out of range.
  void validate() const { check("RankManagerConfig::validate", ""); }

  /// The configuration from a JSON object \p j: the defaults with j's fields over them.
  /// \p source names the input in errors (a file name, "inline", ...).
  static RankManagerConfig fromJson(const nlohmann::ordered_json& j, std::string_view source) {
    return fromJsonImpl(j, source, "RankManagerConfig::fromJson");
  }
  /// Parses JSON text (see fromJson).
  static RankManagerConfig parse(std::string_view text, std::string_view source) {
    return parseImpl(text, source, "RankManagerConfig::parse");
  }
  /// Reads \p path; a missing file gives the defaults (and writes nothing).
  static RankManagerConfig load(const std::filesystem::path& path) {
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

  /// The configuration as JSON, every field, in the table's order.
  nlohmann::ordered_json toJson() const {
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
  /// Writes toJson() to \p path atomically (after validate()).
  void save(const std::filesystem::path& path) const {
    check("RankManagerConfig::save", "");
    writeFileAtomically(path, toJson().dump(2) + "\n", "RankManagerConfig::save");
  }

  /// The layer-specific rank for module \p name: an exact key, else the longest key that is a
  /// dot-separated suffix of the name; none when no key matches.
  std::optional<std::pair<std::string, Eigen::Index>> specificRankFor(std::string_view name) const {
    std::optional<std::pair<std::string, Eigen::Index>> best;
    for (const auto& entry : layerSpecificRanks) {
      const std::string& key = entry.first;
      if (key == name) return entry;
      const bool suffix = key.size() < name.size() &&
                          name.substr(name.size() - key.size()) == key &&
                          name[name.size() - key.size() - 1] == '.';
      if (suffix && (!best || key.size() > best->first.size())) best = entry;
    }
    return best;
  }

 private:
  static std::string shown(const nlohmann::ordered_json& v) {
    std::string s = v.dump();
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
  }
  [[noreturn]] static void bad(std::string_view where, std::string_view source,
                               std::string_view field, std::string_view expected,
                               const std::string& got) {
    if (source.empty())
      detail::fail(where, "field '{}': expected {}, got {}", field, expected, got);
    detail::fail(where, "{}: field '{}': expected {}, got {}", source, field, expected, got);
  }

  void check(std::string_view where, std::string_view source) const {
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

  static RankManagerConfig parseImpl(std::string_view text, std::string_view source,
                                     std::string_view where) {
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::parse_error& e) {
      detail::fail(where, "{}: expected valid JSON, got a syntax error at byte {}", source, e.byte);
    }
    return fromJsonImpl(j, source, where);
  }

  static RankManagerConfig fromJsonImpl(const nlohmann::ordered_json& j, std::string_view source,
                                        std::string_view where) {
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
};

}  // namespace lora::train
