#pragma once
/// \file milora.hpp
/// \brief MiLoRA: the adapter starts as the minor singular part of W, the base keeps the rest.

#include <algorithm>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/init/detail/singular_factors.hpp"
#include "lora/init/initializer.hpp"
#include "lora/linalg/dense_svd.hpp"

namespace lora::init {

/// \brief MiLoRA: PiSSA's construction on the r smallest singular triplets of W.
///
/// With W = U S V^T (thin, p = min(out, in) triplets, decreasing) and the last r of them
/// (U_m, S_m, V_m), S' = S_m / s: A = diag(sqrt(S')) V_m^T, B = U_m diag(sqrt(S')), so s·B·A is
/// the minor rank-r part of W, and the base weight becomes W − s·B·A (BaseUpdate::SubtractDelta;
/// the model's output at step 0 is unchanged; needs a writable W). The factors keep the
/// decreasing order of the tail (the smallest triplet last).
/// Source: Wang et al., "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient LLM
/// Finetuning" (arXiv 2406.09044, 2024); the scaling s is handled as in PEFT's PiSSA.
///
/// Cost: a full dense SVD (Eigen's BDCSVD, O(out·in·min(out, in)), about 18 s for a 4096 x 4096
/// float matrix on the development VM): the smallest singular values are clustered near the
/// bottom of the spectrum, where Krylov methods converge slowly, so no partial method is used.
/// Needs r <= min(out, in).
struct Milora {
  static constexpr bool dataDependent = true;
  static std::string name() { return "milora"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& /*rng*/) const;
};

template <typename Scalar>
Factors<Scalar> Milora::initialize(const Request<Scalar>& request, Rng& /*rng*/) const {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  constexpr const char* where = "Milora::initialize";
  requireWeight(request, where);
  const Eigen::Index minDim = std::min(request.outFeatures, request.inFeatures);
  const Eigen::Index r = request.rank;
  if (r > minDim) detail::fail(where, "expected a rank <= min(out, in) = {}, got {}", minDim, r);
  const Matrix W = weightCopy(request);
  if (!W.allFinite()) detail::fail(where, "expected a finite base weight, got NaN or Inf");
  const auto svd = linalg::denseSVD(W);
  return detail::singularFactors<Scalar>(svd.U.rightCols(r), svd.S.tail(r), svd.V.rightCols(r),
                                         request.scalingFactor());
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> Milora::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> Milora::initialize<double>(const Request<double>&, Rng&) const;
#endif

}  // namespace lora::init
