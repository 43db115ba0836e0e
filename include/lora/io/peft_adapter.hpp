#pragma once
/// \file peft_adapter.hpp
/// \brief A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) as layers.

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lora/error.hpp"
#include "lora/init/init.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/layer.hpp"

namespace lora {

/// \brief A loaded PEFT adapter: its configuration and one Layer per adapted module.
///
/// Tensor keys follow PEFT's `save_pretrained`: `base_model.model.<module>.lora_A.weight`
/// (r x in), `...lora_B.weight` (out x r) and, with DoRA, `...lora_magnitude_vector` (out).
/// Each module's rank comes from its tensors and must equal the rank the config's
/// `rank_pattern` rule gives it; alpha comes from `alpha_pattern` / `lora_alpha`, the scaling mode
/// from `use_rslora`. Modules keep the order of the file. The layers are not bound to a base:
/// bind each to the model's weight (with `fan_in_fan_out`, the stored weight is (in, out), i.e.
/// `BaseWeight(ptr, out, in, Layout::ColMajor)` over the row-major buffer).
///
/// \code
/// auto adapter = lora::PeftAdapter<float>::load("my-adapter");
/// for (auto& [name, layer] : adapter) fmt::print("{}: r = {}\n", name, layer.rank());
/// \endcode
template <typename Scalar>
class PeftAdapter {
 public:
  using Module = std::pair<std::string, Layer<Scalar>>;
  static constexpr std::string_view kPrefix = "base_model.model.";

  /// Reads and validates the folder; any inconsistency is a lora::Error naming the file.
  static PeftAdapter load(const std::filesystem::path& dir) {
    constexpr const char* where = "PeftAdapter::load";
    PeftAdapter adapter;
    adapter.m_config = AdapterConfig::load(dir);
    const std::filesystem::path file = dir / "adapter_model.safetensors";
    const SafeTensorsReader st = SafeTensorsReader::open(file);
    const AdapterConfig& cfg = adapter.m_config;

    struct Parts {
      std::string a, b, magnitude;
    };
    std::vector<std::string> order;
    std::map<std::string, Parts, std::less<>> parts;
    for (const std::string& key : st.names()) {
      if (!key.starts_with(kPrefix))
        detail::fail(where, "tensor keys starting with '{}' in '{}', got '{}'", kPrefix,
                     file.string(), key);
      const std::string_view rest = std::string_view(key).substr(kPrefix.size());
      std::string module;
      std::string Parts::*slot = nullptr;
      for (auto [suffix, member] :
           {std::pair{std::string_view(".lora_A.weight"), &Parts::a},
            std::pair{std::string_view(".lora_B.weight"), &Parts::b},
            std::pair{std::string_view(".lora_magnitude_vector"), &Parts::magnitude}}) {
        if (rest.ends_with(suffix) && rest.size() > suffix.size()) {
          module = std::string(rest.substr(0, rest.size() - suffix.size()));
          slot = member;
          break;
        }
      }
      if (slot == nullptr)
        detail::fail(where,
                     "only lora_A.weight, lora_B.weight and lora_magnitude_vector tensors in '{}', "
                     "got '{}' (embedding, bias and modules_to_save tensors are not supported)",
                     file.string(), key);
      auto [it, inserted] = parts.try_emplace(module);
      if (inserted) order.push_back(module);
      it->second.*slot = key;
    }
    if (order.empty())
      detail::fail(where, "at least one LoRA module in '{}', got none", file.string());

    const ScalingMode mode = cfg.useRslora ? ScalingMode::RsLora : ScalingMode::Standard;
    for (const std::string& module : order) {
      const Parts& p = parts.find(module)->second;
      if (p.a.empty() || p.b.empty())
        detail::fail(where, "both lora_A and lora_B for module '{}' in '{}', got only {}", module,
                     file.string(), p.a.empty() ? "lora_B" : "lora_A");
      const auto A = st.matrix<Scalar>(p.a);
      const auto B = st.matrix<Scalar>(p.b);
      if (A.rows() != B.cols())
        detail::fail(
            where,
            "lora_A (r x in) and lora_B (out x r) with the same r for '{}', got {}x{} and {}x{}",
            module, A.rows(), A.cols(), B.rows(), B.cols());
      const int configured = cfg.rankFor(module);
      if (A.rows() != configured)
        detail::fail(
            where, "rank {} for '{}' (from r / rank_pattern in the config), got tensors of rank {}",
            configured, module, A.rows());
      Layer<Scalar> layer =
          cfg.initLoraWeights == "gaussian"
              ? Layer<Scalar>::fromFactors(A, B, cfg.alphaFor(module), mode, init::Gaussian{})
              : Layer<Scalar>::fromFactors(A, B, cfg.alphaFor(module), mode);
      if (!p.magnitude.empty()) {
        if (!cfg.useDora)
          detail::fail(where, "no lora_magnitude_vector without use_dora for '{}', got one",
                       module);
        layer.setMagnitude(st.vector<Scalar>(p.magnitude));
      } else if (cfg.useDora) {
        detail::fail(where, "a lora_magnitude_vector for '{}' (use_dora is true), got none",
                     module);
      }
      adapter.m_modules.emplace_back(module, std::move(layer));
    }
    return adapter;
  }

  const AdapterConfig& config() const noexcept { return m_config; }
  std::size_t size() const noexcept { return m_modules.size(); }
  bool contains(std::string_view module) const { return find(module) != m_modules.end(); }

  /// The layer of \p module (with or without the `base_model.model.` prefix).
  Layer<Scalar>& layer(std::string_view module) {
    return const_cast<Layer<Scalar>&>(std::as_const(*this).layer(module));
  }
  const Layer<Scalar>& layer(std::string_view module) const {
    auto it = find(module);
    if (it == m_modules.end())
      detail::fail("PeftAdapter::layer", "a module of this adapter, got '{}'", module);
    return it->second;
  }

  auto begin() noexcept { return m_modules.begin(); }
  auto end() noexcept { return m_modules.end(); }
  auto begin() const noexcept { return m_modules.begin(); }
  auto end() const noexcept { return m_modules.end(); }

 private:
  typename std::vector<Module>::const_iterator find(std::string_view module) const {
    if (module.starts_with(kPrefix)) module.remove_prefix(kPrefix.size());
    return std::find_if(m_modules.begin(), m_modules.end(),
                        [&](const Module& m) { return m.first == module; });
  }

  AdapterConfig m_config;
  std::vector<Module> m_modules;
};

}  // namespace lora
