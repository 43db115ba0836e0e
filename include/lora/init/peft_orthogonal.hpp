#pragma once
/// \file peft_orthogonal.hpp
/// \brief PEFT's orthogonal LoRA initialization: B·A = 0 with both factors non-zero.

#include <string>
#include <utility>

#include "lora/detail/eigen.hpp"

#include "lora/init/initializer.hpp"
#include "lora/linalg/householder_qr.hpp"

namespace lora::init {

/// \brief PEFT's `init_lora_weights="orthogonal"`: with Q from the QR factorization of an r x r
/// standard normal matrix, Q_o = Q's rows 0, 2, 4, ... and Q_e = rows 1, 3, 5, ... (r/2 x r each),
/// and standard normal G_A (in x r/2) and G_B (r/2 x out):
/// A = (G_A Q_o)^T / 10 (r x in), B = G_B^T Q_e / 10 (out x r).
/// Since Q's rows are orthonormal, Q_e Q_o^T = 0, so B·A = G_B^T Q_e Q_o^T G_A^T / 100 = 0 (to
/// rounding): the model's output is unchanged and the base weight is left as it is
/// (BaseUpdate::Keep), while neither factor starts at zero. r must be even.
/// Source: PEFT `LoraLayer.orthogonal_init` (after
/// https://datta0.github.io/posts/rethink-lora-init/#orthogonal-initialisation).
///
/// Draws (from the layer's seeded Rng, row by row, in torch's order): the r x r matrix, then G_A,
/// then G_B. Computed in double, then rounded to the layer's Scalar. Cost O(r³ + (in + out)·r²).
struct PeftOrthogonal {
  static std::string name() { return "peft_orthogonal"; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const;
};

template <typename Scalar>
Factors<Scalar> PeftOrthogonal::initialize(const Request<Scalar>& request, Rng& rng) const {
  using MatrixD = Eigen::MatrixXd;
  constexpr const char* where = "PeftOrthogonal::initialize";
  const Eigen::Index r = request.rank;
  if (r % 2 != 0) detail::fail(where, "expected an even rank, got {}", r);
  const Eigen::Index half = r / 2;
  MatrixD X(r, r);
  fillNormal(X, rng, 0.0, 1.0);
  const MatrixD Q = linalg::ThinQR<double>(std::move(X)).matrixQ();  // r x r
  MatrixD odd(half, r), even(half, r);  // torch's Q[0::2, :] and Q[1::2, :]
  for (Eigen::Index i = 0; i < half; ++i) {
    odd.row(i) = Q.row(2 * i);
    even.row(i) = Q.row(2 * i + 1);
  }
  MatrixD GA(request.inFeatures, half), GB(half, request.outFeatures);
  fillNormal(GA, rng, 0.0, 1.0);
  fillNormal(GB, rng, 0.0, 1.0);
  Factors<Scalar> f;
  f.A = ((GA * odd).transpose() / 10.0).template cast<Scalar>();
  f.B = ((GB.transpose() * even) / 10.0).template cast<Scalar>();
  return f;
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> PeftOrthogonal::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> PeftOrthogonal::initialize<double>(const Request<double>&,
                                                                   Rng&) const;
#endif

}  // namespace lora::init
