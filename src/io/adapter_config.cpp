#include "lora/io/adapter_config.hpp"

#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/scaling.hpp"
#include "messages.hpp"

namespace lora {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using detail::fail;

constexpr std::string_view kModelPrefix = "base_model.model.";

std::regex compile(const std::string& pattern, std::string_view what, const std::string& key,
                   std::string_view source, std::string_view where) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail(where, "expected a valid regular expression as {} key in '{}', got '{}' ({})", what,
         source, key, e.what());
  }
}

// The regex of Python's re.match(rf"(.*\.)?({key})$", name).
std::regex compilePatternKey(const std::string& key, std::string_view what, std::string_view source,
                             std::string_view where) {
  return compile("(.*\\.)?(" + key + ")$", what, key, source, where);
}

// Python's re.match: anchored at the start; `$` matches at the end or before a final '\n'.
bool pythonMatch(const std::regex& re, std::string_view name) {
  constexpr auto kFlags = std::regex_constants::match_continuous;
  if (std::regex_search(name.begin(), name.end(), re, kFlags)) return true;
  return !name.empty() && name.back() == '\n' &&
         std::regex_search(name.begin(), name.end() - 1, re, kFlags);
}

// Field readers: a missing key keeps the default.
class Reader {
 public:
  Reader(const Json& root, std::string_view source, std::string_view where)
      : m_root(root), m_source(source), m_where(where) {}

  const Json* find(const char* key) const {
    const auto it = m_root.find(key);
    return it == m_root.end() ? nullptr : &*it;
  }

  [[noreturn]] void wrong(const char* key, std::string_view expected, const Json& got) const {
    fail(m_where, "expected \"{}\" to be {} in '{}', got {}", key, expected, m_source,
         detail::jsonBrief(got));
  }

  void boolean(const char* key, bool& out) const {
    if (const Json* j = find(key)) {
      if (!j->is_boolean()) wrong(key, "true or false", *j);
      out = j->get<bool>();
    }
  }

  void string(const char* key, std::string& out) const {
    if (const Json* j = find(key)) {
      if (!j->is_string()) wrong(key, "a string", *j);
      out = j->get<std::string>();
    }
  }

  void optionalString(const char* key, std::optional<std::string>& out) const {
    if (const Json* j = find(key)) {
      if (j->is_null()) {
        out.reset();
      } else if (j->is_string()) {
        out = j->get<std::string>();
      } else {
        wrong(key, "a string or null", *j);
      }
    }
  }

  static bool isPositiveInt(const Json& j) {
    if (j.is_number_unsigned())
      return j.get<std::uint64_t>() >= 1 && j.get<std::uint64_t>() <= INT_MAX;
    return false;  // negative integers, floats, booleans, ...
  }

  static bool isPositiveFinite(const Json& j) {
    if (!j.is_number()) return false;
    const double v = j.get<double>();
    return std::isfinite(v) && v > 0;
  }

  std::string_view source() const { return m_source; }
  std::string_view where() const { return m_where; }

 private:
  const Json& m_root;
  std::string_view m_source;
  std::string_view m_where;
};

AdapterConfig parseImpl(std::string_view text, std::string_view source, std::string_view where) {
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(where, "expected valid JSON in '{}', got {}", source, e.what());
  }
  if (!root.is_object()) {
    fail(where, "expected a JSON object in '{}', got {}", source, root.type_name());
  }

  AdapterConfig c;
  c.sourceName = std::string(source);
  c.rawJson = std::string(text);
  const Reader in(root, source, where);

  in.string("peft_type", c.peftType);
  if (c.peftType != "LORA") {
    fail(where, "expected \"peft_type\" to be \"LORA\" in '{}', got \"{}\"", source, c.peftType);
  }

  if (const Json* j = in.find("r")) {
    if (!Reader::isPositiveInt(*j)) in.wrong("r", "a positive integer", *j);
    c.r = static_cast<int>(j->get<std::uint64_t>());
  }
  if (const Json* j = in.find("lora_alpha")) {
    if (!Reader::isPositiveFinite(*j)) in.wrong("lora_alpha", "a positive finite number", *j);
    c.loraAlpha = j->get<double>();
  }
  in.boolean("use_rslora", c.useRslora);
  in.boolean("use_dora", c.useDora);
  in.boolean("fan_in_fan_out", c.fanInFanOut);

  in.string("bias", c.bias);
  if (c.bias != "none" && c.bias != "all" && c.bias != "lora_only") {
    fail(where, "expected \"bias\" to be \"none\", \"all\" or \"lora_only\" in '{}', got \"{}\"",
         source, c.bias);
  }

  if (const Json* j = in.find("lora_dropout")) {
    if (!j->is_number() || !(j->get<double>() >= 0.0 && j->get<double>() <= 1.0)) {
      in.wrong("lora_dropout", "a number in [0, 1]", *j);
    }
    c.loraDropout = j->get<double>();
  }

  if (const Json* j = in.find("target_modules")) {
    if (j->is_string()) {
      c.targetModulesRegex = j->get<std::string>();
    } else if (j->is_array()) {
      for (const Json& m : *j) {
        if (!m.is_string()) in.wrong("target_modules", "a list of strings, a string or null", *j);
        c.targetModules.push_back(m.get<std::string>());
      }
    } else if (!j->is_null()) {
      in.wrong("target_modules", "a list of strings, a string or null", *j);
    }
  }

  if (const Json* j = in.find("rank_pattern")) {
    if (!j->is_object() && !j->is_null()) in.wrong("rank_pattern", "an object", *j);
    if (j->is_object()) {
      for (auto it = j->begin(); it != j->end(); ++it) {
        if (!Reader::isPositiveInt(it.value())) {
          fail(where, "expected a positive integer rank for rank_pattern key '{}' in '{}', got {}",
               it.key(), source, detail::jsonBrief(it.value()));
        }
        c.rankPattern.emplace_back(it.key(), static_cast<int>(it.value().get<std::uint64_t>()));
      }
    }
  }
  if (const Json* j = in.find("alpha_pattern")) {
    if (!j->is_object() && !j->is_null()) in.wrong("alpha_pattern", "an object", *j);
    if (j->is_object()) {
      for (auto it = j->begin(); it != j->end(); ++it) {
        if (!Reader::isPositiveFinite(it.value())) {
          fail(where, "expected a positive finite alpha for alpha_pattern key '{}' in '{}', got {}",
               it.key(), source, detail::jsonBrief(it.value()));
        }
        c.alphaPattern.emplace_back(it.key(), it.value().get<double>());
      }
    }
  }

  if (const Json* j = in.find("init_lora_weights")) {
    if (j->is_boolean()) {
      c.initLoraWeights = j->get<bool>() ? "true" : "false";
    } else if (j->is_string()) {
      c.initLoraWeights = j->get<std::string>();
    } else {
      in.wrong("init_lora_weights", "true, false or a string", *j);
    }
  }
  in.optionalString("task_type", c.taskType);
  in.optionalString("base_model_name_or_path", c.baseModelNameOrPath);

  return c;
}

}  // namespace

struct AdapterConfig::CompiledPattern {
  std::string key;
  std::regex regex;
};

AdapterConfig AdapterConfig::parse(std::string_view json, std::string_view sourceName) {
  constexpr std::string_view kWhere = "AdapterConfig::parse";
  AdapterConfig c = parseImpl(json, sourceName, kWhere);
  for (const auto& [key, value] : c.rankPattern) {
    c.m_rankRegex.push_back(std::make_shared<const CompiledPattern>(
        CompiledPattern{key, compilePatternKey(key, "a rank_pattern", sourceName, kWhere)}));
  }
  for (const auto& [key, value] : c.alphaPattern) {
    c.m_alphaRegex.push_back(std::make_shared<const CompiledPattern>(
        CompiledPattern{key, compilePatternKey(key, "an alpha_pattern", sourceName, kWhere)}));
  }
  if (c.targetModulesRegex) {
    c.m_targetRegex = std::make_shared<const CompiledPattern>(
        CompiledPattern{*c.targetModulesRegex, compile(*c.targetModulesRegex, "the target_modules",
                                                       *c.targetModulesRegex, sourceName, kWhere)});
  }
  return c;
}

AdapterConfig AdapterConfig::load(const std::filesystem::path& dirOrFile) {
  constexpr std::string_view kWhere = "AdapterConfig::load";
  std::error_code ec;
  const fs::path file =
      fs::is_directory(dirOrFile, ec) ? dirOrFile / "adapter_config.json" : dirOrFile;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail(kWhere, "expected a readable adapter_config.json, got '{}' ({})", file.string(),
         fs::exists(file, ec) ? "cannot open it" : "no such file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(kWhere, "expected to read '{}', got a read error", file.string());
  return parse(text.str(), file.string());
}

std::string_view AdapterConfig::moduleName(std::string_view key) {
  if (key.starts_with(kModelPrefix)) key.remove_prefix(kModelPrefix.size());
  return key;
}

bool AdapterConfig::patternMatches(const std::vector<CompiledPatternPtr>& cache, std::size_t i,
                                   const std::string& key, std::string_view module,
                                   std::string_view where) const {
  if (i < cache.size() && cache[i]->key == key) return pythonMatch(cache[i]->regex, module);
  return pythonMatch(compilePatternKey(key, "a pattern", sourceName, where), module);
}

int AdapterConfig::rankFor(std::string_view module) const {
  const std::string_view n = moduleName(module);
  for (std::size_t i = 0; i < rankPattern.size(); ++i) {
    if (patternMatches(m_rankRegex, i, rankPattern[i].first, n, "AdapterConfig::rankFor"))
      return rankPattern[i].second;
  }
  return r;
}

double AdapterConfig::alphaFor(std::string_view module) const {
  const std::string_view n = moduleName(module);
  for (std::size_t i = 0; i < alphaPattern.size(); ++i) {
    if (patternMatches(m_alphaRegex, i, alphaPattern[i].first, n, "AdapterConfig::alphaFor"))
      return alphaPattern[i].second;
  }
  return loraAlpha;
}

double AdapterConfig::scalingFor(std::string_view module) const {
  const int rank = rankFor(module);
  if (rank <= 0) {
    fail("AdapterConfig::scalingFor", "expected a positive rank for '{}', got {}", module, rank);
  }
  return lora::scalingFor(alphaFor(module), rank,
                          useRslora ? ScalingMode::RsLora : ScalingMode::Standard);
}

bool AdapterConfig::targets(std::string_view module) const {
  const std::string_view n = moduleName(module);
  if (targetModulesRegex) {
    if (m_targetRegex && m_targetRegex->key == *targetModulesRegex) {
      return std::regex_match(n.begin(), n.end(), m_targetRegex->regex);
    }
    const std::regex re = compile(*targetModulesRegex, "the target_modules", *targetModulesRegex,
                                  sourceName, "AdapterConfig::targets");
    return std::regex_match(n.begin(), n.end(), re);
  }
  for (const std::string& key : targetModules) {
    if (n == key) return true;
    if (n.size() > key.size() && n.ends_with(key) && n[n.size() - key.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

}  // namespace lora
