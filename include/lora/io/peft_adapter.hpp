#pragma once
/// \file peft_adapter.hpp
/// \brief A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) as layers.

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lora/error.hpp"
#include "lora/init/gaussian.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/layer.hpp"
#include "lora/scaling.hpp"

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

  /// Reads and validates the folder (PeftAdapterFile::open does the checking); any
  /// inconsistency is a lora::Error that names this function, the folder and the file.
  static PeftAdapter load(const std::filesystem::path& dir);

  const AdapterConfig& config() const noexcept { return m_config; }
  std::size_t size() const noexcept { return m_modules.size(); }
  bool contains(std::string_view module) const { return find(module) != m_modules.end(); }

  /// The layer of \p module (with or without the `base_model.model.` prefix).
  Layer<Scalar>& layer(std::string_view module) {
    return const_cast<Layer<Scalar>&>(std::as_const(*this).layer(module));
  }
  const Layer<Scalar>& layer(std::string_view module) const;

  auto begin() noexcept { return m_modules.begin(); }
  auto end() noexcept { return m_modules.end(); }
  auto begin() const noexcept { return m_modules.begin(); }
  auto end() const noexcept { return m_modules.end(); }

 private:
  typename std::vector<Module>::const_iterator find(std::string_view module) const;

  AdapterConfig m_config;
  std::vector<Module> m_modules;
};

// The member definitions, out of the class body: for PeftAdapter<float> and <double> they are
// compiled once in liblorapp (src/io/peft_adapter.cpp, see below).

template <typename Scalar>
PeftAdapter<Scalar> PeftAdapter<Scalar>::load(const std::filesystem::path& dir) {
  std::optional<PeftAdapterFile> file;
  try {
    file.emplace(PeftAdapterFile::open(dir));
  } catch (const Error& e) {
    throw Error(fmt::format("PeftAdapter::load(): expected a valid PEFT adapter folder '{}': {}",
                            dir.string(), e.what()));
  }
  PeftAdapter adapter;
  adapter.m_config = file->config();
  const ScalingMode mode = file->scalingMode();
  const bool gaussian = adapter.m_config.initLoraWeights == "gaussian";
  adapter.m_modules.reserve(file->modules().size());
  for (const PeftAdapterFile::Module& m : file->modules()) {
    const auto A = file->template A<Scalar>(m);
    const auto B = file->template B<Scalar>(m);
    Layer<Scalar> layer = gaussian
                              ? Layer<Scalar>::fromFactors(A, B, m.alpha, mode, init::Gaussian{})
                              : Layer<Scalar>::fromFactors(A, B, m.alpha, mode);
    if (!m.keyMagnitude.empty()) layer.setMagnitude(file->template magnitude<Scalar>(m));
    adapter.m_modules.emplace_back(m.name, std::move(layer));
  }
  return adapter;
}

template <typename Scalar>
const Layer<Scalar>& PeftAdapter<Scalar>::layer(std::string_view module) const {
  auto it = find(module);
  if (it == m_modules.end())
    detail::fail("PeftAdapter::layer", "expected a module of this adapter, got '{}'", module);
  return it->second;
}

template <typename Scalar>
auto PeftAdapter<Scalar>::find(std::string_view module) const ->
    typename std::vector<Module>::const_iterator {
  if (module.starts_with(kPrefix)) module.remove_prefix(kPrefix.size());
  return std::find_if(m_modules.begin(), m_modules.end(),
                      [&](const Module& m) { return m.first == module; });
}

// Compiled once in liblorapp (src/io/peft_adapter.cpp). Define LORA_NO_EXTERN_TEMPLATES to
// compile them in the translation unit instead, with its own flags.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class PeftAdapter<float>;
extern template class PeftAdapter<double>;
#endif

}  // namespace lora
