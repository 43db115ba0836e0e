#pragma once
/// \file spectrum.hpp
/// \brief Rank rules on a spectrum of singular values (one definition each, used everywhere).

#include <cmath>

#include <Eigen/Core>

#include "lora/error.hpp"

namespace lora::linalg {

/// \brief Energy rank: the smallest k >= 1 with Σ_{i<=k} σ_i² >= t · Σ σ_i², for σ sorted in
/// decreasing order and 0 < t <= 1 (the rule of PEFT's `convert_to_lora`).
///
/// An all-zero spectrum has energy rank 1 (the smallest valid LoRA rank).
/// \code
/// Eigen::VectorXd sigma(3); sigma << 3, 1, 0.1;
/// lora::linalg::energyRank(sigma, 0.9);   // 1: 9 / 10.01 >= 0.9
/// \endcode
template <typename Derived>
Eigen::Index energyRank(const Eigen::MatrixBase<Derived>& sigma, double threshold) {
  constexpr const char* where = "energyRank";
  if (!(threshold > 0.0 && threshold <= 1.0))
    detail::fail(where, "expected a threshold in (0, 1], got {}", threshold);
  if (sigma.size() == 0) detail::fail(where, "expected a non-empty spectrum, got none");
  if (!sigma.allFinite() || (sigma.array() < 0).any())
    detail::fail(where,
                 "expected finite non-negative singular values, got a NaN, Inf or negative one");
  const double total = sigma.template cast<double>().squaredNorm();
  if (total == 0.0) return 1;
  double running = 0.0;
  for (Eigen::Index k = 0; k < sigma.size(); ++k) {
    running += static_cast<double>(sigma(k)) * static_cast<double>(sigma(k));
    if (running >= threshold * total) return k + 1;
  }
  return sigma.size();  // rounding: the whole spectrum
}

}  // namespace lora::linalg
