#pragma once
/// \file pissa.hpp
/// \brief PiSSA: the adapter starts as the principal singular part of W, the base keeps the rest.

#include <algorithm>
#include <cmath>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/init/detail/singular_factors.hpp"
#include "lora/init/initializer.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"

namespace lora::init {

/// \brief PiSSA with exact singular triplets (PEFT `init_lora_weights="pissa"`).
///
/// With W = U S V^T and the top r triplets (U_r, S_r, V_r), S' = S_r / s:
/// A = diag(sqrt(S')) V_r^T, B = U_r diag(sqrt(S')), so s·B·A is the best rank-r approximation of
/// W, and the base weight becomes the residual W − s·B·A (BaseUpdate::SubtractDelta: the model's
/// output at step 0 is unchanged; needs a writable W).
/// Source: Meng, Wang & Zhang, "PiSSA: Principal Singular Values and Singular Vectors Adaptation
/// of Large Language Models" (NeurIPS 2024); PEFT `LoraLayer.pissa_init`.
///
/// The triplets come from linalg::PartialSVD, certified to max(‖W v − σ u‖, ‖W^T u − σ v‖) <=
/// τ·σ_1 (τ = \ref tolerance, 1e-5 for float by default); if that fails within its iteration
/// budget, a dense BDCSVD is used instead. Cost for out = in = 4096, r = 16: a few dozen GEMMs
/// with about 24 columns (see docs/performance.md), instead of the O(out·in·min(out, in)) full SVD
/// PEFT runs. Needs r <= min(out, in).
///
/// \code
/// Eigen::MatrixXf W = ...;   // becomes the residual
/// lora::Layer<float> layer(W, {.rank = 16, .alpha = 16}, lora::init::Pissa{});
/// \endcode
struct Pissa {
  double tolerance = 0.0;  ///< PartialSVD residual tolerance τ; 0: the Scalar's default

  static constexpr bool dataDependent = true;
  static std::string name() { return "pissa"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const;
};

template <typename Scalar>
Factors<Scalar> Pissa::initialize(const Request<Scalar>& request, Rng& rng) const {
  constexpr const char* where = "Pissa::initialize";
  requireWeight(request, where);
  const Eigen::Index minDim = std::min(request.outFeatures, request.inFeatures);
  if (request.rank > minDim)
    detail::fail(where, "expected a rank <= min(out, in) = {}, got {}", minDim, request.rank);
  if (!(std::isfinite(tolerance) && tolerance >= 0.0))
    detail::fail(where, "expected a finite tolerance >= 0, got {}", tolerance);
  linalg::PartialSVDOptions options;
  options.tolerance = tolerance;
  options.seed = rng();
  linalg::PartialSVD<Scalar> svd;
  request.weight.visit([&](const auto& W) {
    if (!W.allFinite()) detail::fail(where, "expected a finite base weight, got NaN or Inf");
    svd.compute(W, request.rank, options);
    if (svd.info() != Eigen::Success && svd.method() != linalg::PartialSVDMethod::Dense) {
      options.method = linalg::PartialSVDMethod::Dense;
      svd.compute(W, request.rank, options);
    }
  });
  return detail::singularFactors<Scalar>(svd.matrixU(), svd.singularValues(), svd.matrixV(),
                                         request.scalingFactor());
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> Pissa::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> Pissa::initialize<double>(const Request<double>&, Rng&) const;
#endif

/// \brief Fast PiSSA with a randomized SVD (PEFT `init_lora_weights="pissa_niter_K"`, K = NIter).
///
/// As Pissa, with (U_r, S_r, V_r) from linalg::randomizedSVD(W, r, NIter) — torch.svd_lowrank
/// semantics: a Gaussian sketch of width r (no oversampling) and NIter power iterations. The
/// residual is still exactly W − s·B·A (SubtractDelta), so the model's output is unchanged; only
/// how close s·B·A is to the best rank-r approximation depends on W's spectrum (close for a fast
/// decay, loose for a flat one). Source: Meng et al., "PiSSA", 2024 (fast SVD, §3); PEFT
/// `LoraLayer.pissa_init` with `svd_lowrank(W, r, niter=K)`. Cost: 2·NIter + 2 GEMMs of W with r
/// columns, plus O((out + in)·r²). Needs r <= min(out, in).
template <int NIter>
struct PissaNiter {
  static_assert(NIter >= 0, "lora::init::PissaNiter: the number of power iterations must be >= 0");

  static constexpr bool dataDependent = true;
  static std::string name() { return "pissa_niter_" + std::to_string(NIter); }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    constexpr const char* where = "PissaNiter::initialize";
    requireWeight(request, where);
    const Eigen::Index minDim = std::min(request.outFeatures, request.inFeatures);
    if (request.rank > minDim)
      detail::fail(where, "expected a rank <= min(out, in) = {}, got {}", minDim, request.rank);
    return request.weight.visit([&](const auto& W) {
      if (!W.allFinite()) detail::fail(where, "expected a finite base weight, got NaN or Inf");
      const auto svd = linalg::randomizedSVD(W, request.rank, NIter, rng);
      return detail::singularFactors<Scalar>(svd.U, svd.S, svd.V, request.scalingFactor());
    });
  }
};

}  // namespace lora::init
