#pragma once
// Test support: kohya-format Stable Diffusion LoRA files built from seeded factors.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "lora/io/safetensors.hpp"
#include "support/matrices.hpp"

namespace lora::test {

/// One module of a kohya file: linear (kernel 0) or conv (kh x kw), its factors seeded.
struct KohyaSpec {
  std::string name;
  Eigen::Index out = 0, in = 0, rank = 0, kh = 0, kw = 0;
  std::optional<float> alpha = 1.0f;
  std::string down = "lora_down", up = "lora_up", suffix = ".weight";
  /// Factors with this many non-zero directions (rank when 0): up's other columns are 0.
  Eigen::Index live = 0;
  double upScale = 0.1;

  Eigen::Index columns() const { return kh > 0 ? in * kh * kw : in; }
  std::string downKey() const { return name + "." + down + suffix; }
  std::string upKey() const { return name + "." + up + suffix; }
};

/// The factors of \p s: up out x r, down r x columns, from \p seed.
inline std::pair<Eigen::MatrixXd, Eigen::MatrixXd> kohyaFactors(const KohyaSpec& s,
                                                                std::uint64_t seed) {
  Eigen::MatrixXd up = gaussian<double>(s.out, s.rank, seed, s.upScale);
  const Eigen::MatrixXd down = gaussian<double>(s.rank, s.columns(), seed + 1, 0.1);
  if (s.live > 0) up.rightCols(s.rank - s.live).setZero();
  return {up, down};
}

/// Adds \p s to \p w in \p type (factors from kohyaFactors(s, seed)). Read them back from the
/// file for the values rounded to \p type.
inline void addKohyaModule(SafeTensorsWriter& w, const KohyaSpec& s, std::uint64_t seed,
                           DType type = DType::F32) {
  const auto [up, down] = kohyaFactors(s, seed);
  std::vector<std::int64_t> downShape{s.rank, s.in}, upShape{s.out, s.rank};
  if (s.kh > 0) {
    downShape = {s.rank, s.in, s.kh, s.kw};
    upShape = {s.out, s.rank, 1, 1};
  }
  w.addFlat(s.downKey(), downShape, down.transpose().reshaped(), type);
  w.addFlat(s.upKey(), upShape, up.transpose().reshaped(), type);
  if (s.alpha) {
    Eigen::Matrix<float, 1, 1> a;
    a(0) = *s.alpha;
    w.addFlat(s.name + ".alpha", {}, a, type);
  }
}

/// Writes the modules \p specs (module i seeded with seed + 10 i) and \p metadata to \p path.
inline void writeKohyaFile(const std::filesystem::path& path, const std::vector<KohyaSpec>& specs,
                           std::uint64_t seed, DType type = DType::F32,
                           const std::map<std::string, std::string>& metadata = {}) {
  SafeTensorsWriter w;
  for (std::size_t i = 0; i < specs.size(); ++i) addKohyaModule(w, specs[i], seed + 10 * i, type);
  for (const auto& [k, v] : metadata) w.setMetadata(k, v);
  w.write(path);
}

/// A few SDXL-named modules: text encoders 1 and 2, a UNet attention projection, a 1x1 proj_in
/// and a 3x3 LoCon conv; ranks 8 (conv 4).
inline std::vector<KohyaSpec> sdxlSpecs() {
  return {
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 48, 48, 8, 0, 0, 4.0f},
      {"lora_te2_text_model_encoder_layers_0_mlp_fc1", 96, 40, 8, 0, 0, 8.0f},
      {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 40, 64, 8, 0, 0, 1.0f},
      {"lora_unet_input_blocks_4_1_proj_in", 40, 40, 8, 1, 1, 8.0f},
      {"lora_unet_input_blocks_4_0_in_layers_2", 40, 20, 4, 3, 3, 2.0f},
  };
}

}  // namespace lora::test
