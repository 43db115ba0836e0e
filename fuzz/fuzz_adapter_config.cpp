// libFuzzer target: lora::AdapterConfig::parse over arbitrary text. Every input must either parse
// or throw lora::Error; any other exception, crash, leak or sanitizer report is a finding. A config
// that parses is then asked what PEFT would ask of it: targets, rank, alpha and scaling for a few
// module names in BERT and Llama spelling (these run the rank_pattern / alpha_pattern regexes).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    const lora::AdapterConfig cfg = lora::AdapterConfig::parse(json, "fuzz");
    double sum = 0;
    for (std::string_view module :
         {"model.layers.0.self_attn.q_proj", "base_model.model.model.layers.31.mlp.down_proj",
          "encoder.layer.3.attention.self.query", "lm_head", ""}) {
      if (cfg.targets(module)) sum += 1;
      sum += cfg.rankFor(module) + cfg.alphaFor(module) + cfg.scalingFor(module);
    }
    if (sum == -1) return 0;  // keeps the calls from being optimized away
  } catch (const lora::Error&) {
  }
  return 0;
}
