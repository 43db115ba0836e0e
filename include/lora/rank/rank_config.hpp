#pragma once
/// \file rank_config.hpp
/// \brief rank::RankManagerConfig: train::RankManager's JSON configuration, with the article's
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
/// fromJson() and toJson() take and give an nlohmann::ordered_json, declared here through
/// <nlohmann/json_fwd.hpp>: include <nlohmann/json.hpp> to use them. The JSON code is compiled in
/// liblorapp (src/rank/rank_config.cpp).
///
/// \code
/// auto config = lora::rank::RankManagerConfig::load("lora_rank_config.json");
/// config.patience = 20;
/// config.save("lora_rank_config.json");   // explicit, atomic
/// \endcode

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include "lora/detail/eigen.hpp"

namespace lora::rank {

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
  void validate() const;

  /// The configuration from a JSON object \p j: the defaults with j's fields over them.
  /// \p source names the input in errors (a file name, "inline", ...).
  static RankManagerConfig fromJson(const nlohmann::ordered_json& j, std::string_view source);
  /// Parses JSON text (see fromJson).
  static RankManagerConfig parse(std::string_view text, std::string_view source);
  /// Reads \p path; a missing file gives the defaults (and writes nothing).
  static RankManagerConfig load(const std::filesystem::path& path);

  /// The configuration as JSON, every field, in the table's order.
  nlohmann::ordered_json toJson() const;
  /// Writes toJson() to \p path atomically (after validate()).
  void save(const std::filesystem::path& path) const;

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
  void check(std::string_view where, std::string_view source) const;
  static RankManagerConfig parseImpl(std::string_view text, std::string_view source,
                                     std::string_view where);
  static RankManagerConfig fromJsonImpl(const nlohmann::ordered_json& j, std::string_view source,
                                        std::string_view where);
};

}  // namespace lora::rank
