#pragma once
/// \file adapter_config.hpp
/// \brief The LoRA fields of a HuggingFace PEFT `adapter_config.json`, with PEFT's pattern rules.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lora {

/// \brief A PEFT LoRA adapter configuration (`adapter_config.json`, PEFT `LoraConfig`).
///
/// Per module `n` (the `base_model.model.` prefix is stripped when present):
/// rank `r_n` and alpha `a_n` come from the first key `k` of `rank_pattern` / `alpha_pattern`,
/// in file order, for which Python's `re.match(rf"(.*\.)?({k})$", n)` matches, else `r` /
/// `lora_alpha`; the scaling is `s_n = a_n / r_n`, or `a_n / sqrt(r_n)` with `use_rslora`
/// (reference: PEFT `get_pattern_key`, `LoraLayer.update_layer`). A module is targeted when
/// `target_modules` is a list and `n == key` or `n` ends with `"." + key`, or when it is a
/// string and the regex matches all of `n` (PEFT `check_target_module_exists`; the layer filters
/// `layers_to_transform` / `layers_pattern` are not modelled).
///
/// Regexes use std::regex (ECMAScript), which agrees with Python's `re` for the usual
/// constructs; Python-only syntax such as `(?P<name>...)` is rejected as an invalid regex.
/// \code
/// auto cfg = lora::AdapterConfig::load("adapters/rslora");   // <dir>/adapter_config.json
/// int r = cfg.rankFor("base_model.model.layers.0.mlp.down_proj");
/// double s = cfg.scalingFor("layers.0.mlp.down_proj");
/// \endcode
struct AdapterConfig {
  std::string peftType = "LORA";                         ///< `peft_type`; only "LORA" is accepted
  int r = 8;                                             ///< `r`, a positive integer
  double loraAlpha = 8;                                  ///< `lora_alpha`, positive and finite
  bool useRslora = false;                                ///< `use_rslora`: scaling alpha / sqrt(r)
  bool useDora = false;                                  ///< `use_dora`
  bool fanInFanOut = false;                              ///< `fan_in_fan_out`
  std::string bias = "none";                             ///< `bias`: "none", "all" or "lora_only"
  double loraDropout = 0;                                ///< `lora_dropout`, in [0, 1]
  std::vector<std::string> targetModules;                ///< `target_modules` given as a list
  std::optional<std::string> targetModulesRegex;         ///< `target_modules` given as a string
  std::vector<std::pair<std::string, int>> rankPattern;  ///< `rank_pattern`, file order
  std::vector<std::pair<std::string, double>> alphaPattern;  ///< `alpha_pattern`, file order
  std::string initLoraWeights = "true";  ///< `init_lora_weights` as text: true, false, "pissa"...
  std::optional<std::string> taskType;   ///< `task_type` (null -> empty)
  std::optional<std::string> baseModelNameOrPath;  ///< `base_model_name_or_path`
  std::string rawJson;     ///< the JSON text as read, so a writer can keep unknown fields
  std::string sourceName;  ///< the file (or name) used in error messages

  /// Parses and validates the JSON text; bad JSON, wrong types or out-of-range values (r not a
  /// positive integer, lora_alpha not positive and finite, peft_type other than "LORA", pattern
  /// values not positive, an invalid pattern regex) throw lora::Error naming `sourceName`.
  static AdapterConfig parse(std::string_view json, std::string_view sourceName);

  /// Reads `<dir>/adapter_config.json` when `dirOrFile` is a folder, else the file itself.
  static AdapterConfig load(const std::filesystem::path& dirOrFile);

  /// `key` without a leading `base_model.model.`, e.g. `"layers.0.q_proj"`.
  static std::string_view moduleName(std::string_view key);

  /// The rank of `module`: the first matching `rank_pattern` entry, else `r`.
  int rankFor(std::string_view module) const;
  /// The alpha of `module`: the first matching `alpha_pattern` entry, else `lora_alpha`.
  double alphaFor(std::string_view module) const;
  /// `alphaFor / rankFor`, or `alphaFor / sqrt(rankFor)` with `use_rslora`.
  double scalingFor(std::string_view module) const;
  /// Whether PEFT puts a LoRA layer on `module` (see the class comment).
  bool targets(std::string_view module) const;

 private:
  /// A pattern key and its compiled std::regex; defined in src/io/adapter_config.cpp, so that
  /// <regex> stays out of this header. Immutable once built, so copies of the config share it.
  struct CompiledPattern;
  using CompiledPatternPtr = std::shared_ptr<const CompiledPattern>;

  bool patternMatches(const std::vector<CompiledPatternPtr>& cache, std::size_t i,
                      const std::string& key, std::string_view module,
                      std::string_view where) const;

  // Precompiled at parse time; a field changed afterwards is compiled on use.
  std::vector<CompiledPatternPtr> m_rankRegex;
  std::vector<CompiledPatternPtr> m_alphaRegex;
  CompiledPatternPtr m_targetRegex;  ///< null when target_modules is not a regex
};

}  // namespace lora
