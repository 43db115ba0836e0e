#pragma once
/// \file orthogonal.hpp
/// \brief The article's orthogonal LoRA initialization.

#include <cmath>
#include <string>

#include "lora/linalg/detail/orthogonal.hpp"
#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief The article's orthogonal init: A = orthogonal(r x in)·gain, B = orthogonal(r x out)^T
/// · 0.1·gain, each drawn like torch.nn.init.orthogonal_ (QR of a Gaussian matrix, signs fixed).
///
/// Source: the article's `AdvancedLoRAInitializer.orthogonal_init`. When r <= min(in, out), A has
/// orthonormal rows and B orthonormal columns (times the gains), so s·B·A has r singular values
/// s·0.1·gain² and is not zero: the output moves at step 0 (wrap in SubtractDelta to keep it).
/// Not PEFT's `init_lora_weights="orthogonal"` (see PeftOrthogonal). Costs two thin QRs,
/// O(r²·(in + out)).
struct Orthogonal {
  double gain = 1.0;

  static std::string name() { return "orthogonal"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    if (!(std::isfinite(gain) && gain > 0.0))
      detail::fail("Orthogonal::initialize", "expected a positive finite gain, got {}", gain);
    Factors<Scalar> f;
    f.A = detail::orthogonalMatrix<Scalar>(request.rank, request.inFeatures, gain, rng);
    f.B = detail::orthogonalMatrix<Scalar>(request.rank, request.outFeatures, 0.1 * gain, rng)
              .transpose();
    return f;
  }
};

}  // namespace lora::init
