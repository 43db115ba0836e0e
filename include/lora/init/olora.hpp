#pragma once
/// \file olora.hpp
/// \brief OLoRA: the adapter starts from the QR factorization of W.

#include <algorithm>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/init/initializer.hpp"
#include "lora/linalg/householder_qr.hpp"

namespace lora::init {

/// \brief OLoRA (PEFT `init_lora_weights="olora"`): with the reduced QR factorization W = Q R of
/// the out x in weight, B = Q[:, :r] (orthonormal columns) and A = R[:r, :] (upper trapezoidal),
/// and the base weight becomes W − s·B·A (BaseUpdate::SubtractDelta; needs a writable W). As in
/// PEFT, the scaling s is applied on top of Q_r R_r, so s·B·A = s·Q_r Q_r^T W (s times the
/// projection of W onto the span of its first r columns), not the projection itself.
/// Source: Büyükakyüz, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models"
/// (arXiv 2406.01775, 2024); PEFT `LoraLayer.olora_init`.
///
/// Only the first r Householder reflectors matter: Q_r is the Q of the out x r block W[:, :r] and
/// R[:r, :] = Q_r^T W, so the cost is O(out·r² + out·in·r) (one thin QR and one GEMM) instead of
/// the full QR PEFT runs; the factors are the same, signs included (Householder with LAPACK's
/// sign convention, R's diagonal of either sign). Needs r <= min(out, in).
struct Olora {
  static constexpr bool dataDependent = true;
  static std::string name() { return "olora"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& /*rng*/) const;
};

template <typename Scalar>
Factors<Scalar> Olora::initialize(const Request<Scalar>& request, Rng& /*rng*/) const {
  constexpr const char* where = "Olora::initialize";
  requireWeight(request, where);
  const Eigen::Index minDim = std::min(request.outFeatures, request.inFeatures);
  const Eigen::Index r = request.rank;
  if (r > minDim) detail::fail(where, "expected a rank <= min(out, in) = {}, got {}", minDim, r);
  Factors<Scalar> f;
  request.weight.visit([&](const auto& W) {
    if (!W.allFinite()) detail::fail(where, "expected a finite base weight, got NaN or Inf");
    f.B = linalg::ThinQR<Scalar>(W.leftCols(r)).matrixQ();  // out x r, as r <= out
    f.A.noalias() = f.B.transpose() * W;
  });
  // R[:r, :r] is upper triangular: the entries below the diagonal of Q_r^T W[:, :r] are rounding.
  f.A.leftCols(r).template triangularView<Eigen::StrictlyLower>().setZero();
  f.baseUpdate = BaseUpdate::SubtractDelta;
  return f;
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> Olora::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> Olora::initialize<double>(const Request<double>&, Rng&) const;
#endif

}  // namespace lora::init
