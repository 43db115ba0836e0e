#pragma once
/// \file svd_based.hpp
/// \brief The article's SVD-based initialization from a target matrix.

#include <memory>
#include <string>

#include "lora/init/initializer.hpp"
#include "lora/init/xavier_lora.hpp"
#include "lora/linalg/dense_svd.hpp"

namespace lora::init {

/// \brief svd_based: for a target T (out x in) with SVD U S V^T, A = sqrt(S_r) V_r^T + N(0, ν²)
/// and B = U_r sqrt(S_r) + N(0, ν²), so B·A ≈ T_r (the best rank-r approximation of T) plus noise
/// of scale ν; without a target it is xavier_lora (both as the article's
/// `AdvancedLoRAInitializer.svd_based_init`).
///
/// The article indexes torch.svd's V (not V^T) by rows, which is only right for square
/// orthogonal-symmetric cases; this follows its stated math, A = sqrt(S_r) V_r^T. When r exceeds
/// min(out, in) the extra rows/columns carry noise only. The factors target B·A ≈ T_r, not
/// s·B·A (as the article does; the scaling s is applied on top). Changes no base weight (wrap in
/// SubtractDelta to keep the output). Costs one dense SVD of T, O(out·in·min(out, in)).
struct SvdBased {
  std::shared_ptr<const Eigen::MatrixXd> target{};  ///< T (out x in); none: xavier_lora
  double noiseScale = 0.1;                          ///< ν, the std of the added Gaussian noise
  XavierLora fallback{};

  static constexpr bool dataDependent = true;
  static std::string name() { return "svd_based"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const;
};

template <typename Scalar>
Factors<Scalar> SvdBased::initialize(const Request<Scalar>& request, Rng& rng) const {
  constexpr const char* where = "SvdBased::initialize";
  if (!(std::isfinite(noiseScale) && noiseScale >= 0.0))
    detail::fail(where, "expected a finite noiseScale >= 0, got {}", noiseScale);
  if (!target) return fallback.initialize(request, rng);
  const Eigen::MatrixXd& T = *target;
  if (T.rows() != request.outFeatures || T.cols() != request.inFeatures)
    detail::fail(where, "expected a target of {}x{} (out x in), got {}x{}", request.outFeatures,
                 request.inFeatures, T.rows(), T.cols());
  if (!T.allFinite()) detail::fail(where, "expected a finite target, got NaN or Inf");
  const auto svd = linalg::denseSVD(T);
  const Eigen::Index k = std::min<Eigen::Index>(request.rank, svd.S.size());
  const Eigen::VectorXd root = svd.S.head(k).cwiseSqrt();
  Eigen::MatrixXd A = Eigen::MatrixXd::Zero(request.rank, request.inFeatures);
  Eigen::MatrixXd B = Eigen::MatrixXd::Zero(request.outFeatures, request.rank);
  A.topRows(k) = root.asDiagonal() * svd.V.leftCols(k).transpose();
  B.leftCols(k) = svd.U.leftCols(k) * root.asDiagonal();
  Eigen::MatrixXd noiseA(A.rows(), A.cols()), noiseB(B.rows(), B.cols());
  fillNormal(noiseA, rng, 0.0, noiseScale);
  fillNormal(noiseB, rng, 0.0, noiseScale);
  Factors<Scalar> f;
  f.A = (A + noiseA).template cast<Scalar>();
  f.B = (B + noiseB).template cast<Scalar>();
  return f;
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> SvdBased::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> SvdBased::initialize<double>(const Request<double>&, Rng&) const;
#endif

}  // namespace lora::init
