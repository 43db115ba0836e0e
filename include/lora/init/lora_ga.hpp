#pragma once
/// \file lora_ga.hpp
/// \brief LoRA-GA: factors from the singular vectors of a full-weight gradient.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/init/initializer.hpp"
#include "lora/linalg/partial_svd.hpp"

namespace lora::init {

/// Which singular vectors of the gradient LoraGa puts into A and B (the official code's
/// `direction`; indices 0-based into the 2r leading triplets).
enum class LoraGaDirection {
  ArB2r,  ///< A = V[:, 0:r]^T, B = U[:, r:2r] (the paper's choice and the default)
  ArBr,   ///< A = V[:, 1, 3, ..., 2r−1]^T, B = U[:, 0, 2, ..., 2r−2]
  A2rBr,  ///< A = V[:, r:2r]^T, B = U[:, 0:r]
};

/// How LoraGa scales the orthonormal factors (the official code's `scale`).
enum class LoraGaScale {
  Stable,           ///< both times out^{1/4} / sqrt(γ) (the paper's "stable" scale, the default)
  Unit,             ///< unscaled (orthonormal rows/columns)
  GradientDescent,  ///< both divided by s (the official code's "gd")
};

/// \brief LoRA-GA: A and B from the SVD of the full-weight gradient G = ∂L/∂W (out x in), so the
/// first update of s·B·A approximates the first full fine-tuning step.
///
/// With G = U S V^T and the default direction and scale: A = c·V[:, 0:r]^T (r x in),
/// B = c·U[:, r:2r] (out x r), c = out^{1/4} / sqrt(γ) (γ = 16 by default), and the base weight
/// becomes W − s·B·A (BaseUpdate::SubtractDelta: the model's output at step 0 is unchanged; needs
/// a writable W, so the layer must be built on its base weight). The signs of the singular
/// vectors are free; the first-step update −η s²(B B^T G + G A^T A) does not depend on them.
/// Source: Wang, Yu & Li, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation" (NeurIPS
/// 2024), Algorithm 1; official code Outsider565/LoRA-GA `LoraLayer.lora_ga_init` (direction
/// ArB2r, scale "stable": B and A both times m^{1/4}/sqrt(γ) with m = out_features, then
/// W −= s·B·A). The official code takes the triplets from torch.svd_lowrank(G, q = 4r, niter = 4);
/// here they are the exact top 2r (linalg::PartialSVD in double, certified to τ·σ_1).
///
/// The gradient belongs to the policy (shared, cheap to copy): average ∂L/∂W over a few batches
/// and wrap it in a shared_ptr. Cost: one PartialSVD of G for 2r triplets (a few dozen GEMMs with
/// about 3r columns for large G). Needs 2r <= min(out, in).
///
/// \code
/// auto G = std::make_shared<const Eigen::MatrixXd>(gradientOfW);   // out x in
/// lora::Layer<float> layer(W, {.rank = 8, .alpha = 16}, lora::init::LoraGa{.gradient = G});
/// \endcode
struct LoraGa {
  std::shared_ptr<const Eigen::MatrixXd> gradient;  ///< G = ∂L/∂W, out x in (required)
  double gamma = 16.0;                              ///< γ > 0 of the stable scale
  LoraGaDirection direction = LoraGaDirection::ArB2r;
  LoraGaScale scale = LoraGaScale::Stable;
  double tolerance = 0.0;  ///< PartialSVD residual tolerance for G; 0: 1e-10

  static constexpr bool dataDependent = true;
  static std::string name() { return "lora_ga"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const;
};

template <typename Scalar>
Factors<Scalar> LoraGa::initialize(const Request<Scalar>& request, Rng& rng) const {
  using MatrixD = Eigen::MatrixXd;
  constexpr const char* where = "LoraGa::initialize";
  if (!gradient) detail::fail(where, "expected a gradient G (out x in) in the policy, got none");
  const MatrixD& G = *gradient;
  if (G.rows() != request.outFeatures || G.cols() != request.inFeatures)
    detail::fail(where, "expected a gradient of {}x{} (out x in), got {}x{}", request.outFeatures,
                 request.inFeatures, G.rows(), G.cols());
  if (!G.allFinite()) detail::fail(where, "expected a finite gradient, got NaN or Inf");
  if (!(std::isfinite(gamma) && gamma > 0.0))
    detail::fail(where, "expected a finite gamma > 0, got {}", gamma);
  if (!(std::isfinite(tolerance) && tolerance >= 0.0))
    detail::fail(where, "expected a finite tolerance >= 0, got {}", tolerance);
  const Eigen::Index r = request.rank;
  const Eigen::Index minDim = std::min(G.rows(), G.cols());
  if (2 * r > minDim)
    detail::fail(where, "expected 2·rank <= min(out, in) = {}, got rank {}", minDim, r);
  requireWeight(request, where);

  linalg::PartialSVDOptions options;
  options.tolerance = tolerance;
  options.seed = rng();
  linalg::PartialSVD<double> svd(G, 2 * r, options);
  if (svd.info() != Eigen::Success && svd.method() != linalg::PartialSVDMethod::Dense) {
    options.method = linalg::PartialSVDMethod::Dense;
    svd.compute(G, 2 * r, options);
  }
  const MatrixD& U = svd.matrixU();
  const MatrixD& V = svd.matrixV();
  MatrixD A(r, G.cols()), B(G.rows(), r);
  for (Eigen::Index i = 0; i < r; ++i) {
    Eigen::Index a = i, b = r + i;  // ArB2r
    if (direction == LoraGaDirection::ArBr) {
      a = 2 * i + 1;
      b = 2 * i;
    } else if (direction == LoraGaDirection::A2rBr) {
      a = r + i;
      b = i;
    }
    A.row(i) = V.col(a).transpose();
    B.col(i) = U.col(b);
  }
  double factor = 1.0;
  if (scale == LoraGaScale::Stable)
    factor = std::pow(static_cast<double>(G.rows()), 0.25) / std::sqrt(gamma);
  else if (scale == LoraGaScale::GradientDescent)
    factor = 1.0 / request.scalingFactor();
  Factors<Scalar> f;
  f.A = (factor * A).template cast<Scalar>();
  f.B = (factor * B).template cast<Scalar>();
  f.baseUpdate = BaseUpdate::SubtractDelta;
  return f;
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> LoraGa::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> LoraGa::initialize<double>(const Request<double>&, Rng&) const;
#endif

}  // namespace lora::init
