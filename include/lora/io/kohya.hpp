#pragma once
/// \file kohya.hpp
/// \brief Stable Diffusion LoRA files in the kohya-ss / sd-scripts format (what ComfyUI, A1111,
/// Forge and stable-diffusion.cpp load): which tensors form which module.
///
/// One `.safetensors` file. A module NAME (`lora_unet_…`, `lora_te_…`, SDXL `lora_te1_…` /
/// `lora_te2_…`: the module path with `.` replaced by `_`) has `NAME.lora_down.weight`,
/// `NAME.lora_up.weight` and `NAME.alpha` (a 0-d tensor; without it the scale is 1). As sd-scripts'
/// `networks/resize_lora.py` does, the pairs `lora_A` / `lora_B` (PEFT's names) and `down` / `up`
/// (ControlLoRA) are recognized too, with or without a `.weight` suffix. A linear module has
/// down r x in and up out x r; a conv (LoCon) module down r x in x kh x kw and up out x r x 1 x 1,
/// whose delta up·down is the out x (in·kh·kw) matrix `up.reshape(out, r) @ down.reshape(r, -1)`.
/// The scale is alpha / r.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/io/safetensors.hpp"

namespace lora {

/// \brief One module of a kohya LoRA file.
struct KohyaModule {
  using Index = Eigen::Index;
  std::string name;      ///< the key prefix, e.g. `lora_unet_mid_block_attentions_0_proj_in`
  std::string keyDown;   ///< e.g. `NAME.lora_down.weight`
  std::string keyUp;     ///< e.g. `NAME.lora_up.weight`
  std::string keyAlpha;  ///< `NAME.alpha`, empty when the file has none (scale 1)
  Index rank = 0;        ///< down's first dimension
  Index out = 0;         ///< up's first dimension
  Index in = 0;          ///< down's second dimension: input features or channels
  Index kernelH = 0, kernelW = 0;  ///< a conv module's kernel; 0 for a linear module
  std::optional<double> alpha;     ///< the stored alpha (its value in float32, as kohya reads it)
  DType dtype = DType::F32;        ///< down's dtype

  bool isConv() const noexcept { return kernelH > 0; }
  /// Columns of the delta: in, or in·kh·kw for a conv module.
  Index columns() const noexcept { return isConv() ? in * kernelH * kernelW : in; }
  /// alpha / r, or 1 without an alpha (in double; kohya's resize computes it in float32).
  double scale() const noexcept { return alpha ? *alpha / static_cast<double>(rank) : 1.0; }
};

/// \brief The modules of a kohya file, and the tensors that belong to none.
struct KohyaLayout {
  /// Modules in the byte order of their down keys (the order in which kohya's scripts visit them).
  std::vector<KohyaModule> modules;
  /// Tensors that are not a module's down, up or alpha (for example DoRA's `dora_scale`), in
  /// header order: a resize keeps them.
  std::vector<std::string> others;
};

/// \brief Finds the modules of the kohya LoRA file \p tensors (see the file comment).
///
/// Every problem throws lora::Error naming the file and the module: a down without its up or an
/// up without its down, factors that are not both 2-D (linear) or both 4-D (conv, with an up of
/// kernel 1 x 1), ranks that disagree or are 0, a non-floating-point factor, an alpha that is not
/// a single floating-point value or is not finite, no module at all.
/// \code
/// auto st = lora::SafeTensorsReader::map("style.safetensors");
/// for (const auto& m : lora::readKohyaLayout(st).modules)
///   fmt::print("{}: {} x {}, rank {}\n", m.name, m.out, m.columns(), m.rank);
/// \endcode
KohyaLayout readKohyaLayout(const SafeTensorsReader& tensors);

}  // namespace lora
