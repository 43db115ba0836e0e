#pragma once
/// \file layer_kind.hpp
/// \brief What kind of transformer layer a module name denotes, for BERT and Llama names, and the
/// article's rank factor per kind (section 5.1, `layer_type_factors`).
///
/// | kind | BERT name (component) | Llama name (last component) | factor |
/// | --- | --- | --- | --- |
/// | Query | `query` (`attention.self.query`) | `q_proj` | 1.2 |
/// | Key | `key` | `k_proj` | 1.0 |
/// | Value | `value` | `v_proj` | 1.2 |
/// | AttentionOutput | `attention` … `output` (`attention.output.dense`) | `o_proj` | 0.8 |
/// | Intermediate | `intermediate` (`intermediate.dense`) | `gate_proj`, `up_proj` | 1.5 |
/// | Output | `output` (`output.dense`, the FFN down projection) | `down_proj` | 1.0 |
/// | Unknown | anything else | | 1.0 |
///
/// The rules are tried in the table's order, as the article's `_identify_layer_type`, but on
/// whole dot-separated components rather than substrings, so `monkey.dense` is not a key and
/// `outputs` is not an output. Llama's `gate_proj` and `up_proj` are the FFN's expansion (BERT's
/// intermediate), `down_proj` its contraction (BERT's output.dense), `o_proj` the attention output.
///
/// train::RankManager uses it for its initial rank recommendations.
///
/// \code
/// lora::rank::identifyLayerKind("bert.encoder.layer.0.attention.self.query");  // Query
/// lora::rank::identifyLayerKind("model.layers.3.mlp.down_proj");               // Output
/// \endcode

#include <string>
#include <string_view>
#include <vector>

namespace lora::rank {

enum class LayerKind { Query, Key, Value, AttentionOutput, Intermediate, Output, Unknown };

/// The article's key for a kind ("attention.self.query", ..., "unknown").
inline std::string_view toString(LayerKind kind) noexcept {
  switch (kind) {
    case LayerKind::Query:
      return "attention.self.query";
    case LayerKind::Key:
      return "attention.self.key";
    case LayerKind::Value:
      return "attention.self.value";
    case LayerKind::AttentionOutput:
      return "attention.output.dense";
    case LayerKind::Intermediate:
      return "intermediate.dense";
    case LayerKind::Output:
      return "output.dense";
    case LayerKind::Unknown:
      break;
  }
  return "unknown";
}

/// The article's `layer_type_factors` (1.0 for Unknown, as its `.get(type, 1.0)`).
inline double layerKindFactor(LayerKind kind) noexcept {
  switch (kind) {
    case LayerKind::Query:
      return 1.2;
    case LayerKind::Key:
      return 1.0;
    case LayerKind::Value:
      return 1.2;
    case LayerKind::AttentionOutput:
      return 0.8;
    case LayerKind::Intermediate:
      return 1.5;
    case LayerKind::Output:
      return 1.0;
    case LayerKind::Unknown:
      break;
  }
  return 1.0;
}

/// The kind of module \p name (see the file comment).
inline LayerKind identifyLayerKind(std::string_view name) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  const auto has = [&](std::string_view p) {
    for (auto q : parts)
      if (q == p) return true;
    return false;
  };
  const std::string_view last = parts.back();
  if (has("query") || last == "q_proj") return LayerKind::Query;
  if (has("key") || last == "k_proj") return LayerKind::Key;
  if (has("value") || last == "v_proj") return LayerKind::Value;
  bool attentionSeen = false;
  for (auto q : parts) {
    if (q == "attention") attentionSeen = true;
    if (q == "output" && attentionSeen) return LayerKind::AttentionOutput;
  }
  if (last == "o_proj") return LayerKind::AttentionOutput;
  if (has("intermediate") || last == "gate_proj" || last == "up_proj")
    return LayerKind::Intermediate;
  if (has("output") || last == "down_proj") return LayerKind::Output;
  return LayerKind::Unknown;
}

}  // namespace lora::rank
