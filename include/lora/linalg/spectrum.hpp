#pragma once
/// \file spectrum.hpp
/// \brief Rank rules and measures on a spectrum of singular values: one definition each, which
/// every selector, tool and report calls.
///
/// A spectrum is a vector σ of finite, non-negative values sorted in decreasing order (what
/// FactoredSVD and Layer::spectrum() return); anything else is a lora::Error. Rank *rules*
/// return an Eigen::Index in [1, n], because they pick a LoRA rank (an all-zero spectrum gets 1);
/// rank *measures* return a real number and are 0 for an all-zero spectrum.

#include <algorithm>
#include <cmath>
#include <string_view>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"

namespace lora::detail {

/// Checks that \p sigma is a non-empty, finite, non-negative, non-increasing spectrum.
template <typename Derived>
void checkSpectrum(std::string_view where, const Eigen::MatrixBase<Derived>& sigma) {
  if (sigma.size() == 0) detail::fail(where, "expected a non-empty spectrum, got none");
  if (!sigma.allFinite() || (sigma.array() < 0).any())
    detail::fail(where,
                 "expected finite non-negative singular values, got a NaN, Inf or negative one");
  for (Eigen::Index i = 1; i < sigma.size(); ++i)
    if (sigma(i) > sigma(i - 1))
      detail::fail(where,
                   "expected singular values in decreasing order, got {} after {} at index {}",
                   static_cast<double>(sigma(i)), static_cast<double>(sigma(i - 1)), i);
}

inline void checkFraction(std::string_view where, double t) {
  if (!(t > 0.0 && t <= 1.0)) detail::fail(where, "expected a threshold in (0, 1], got {}", t);
}

/// Smallest k in [1, n] with Σ_{i<k} f(σ_i) >= t · Σ f(σ_i) (numpy's searchsorted, side left,
/// on the normalized cumulative sum, plus one).
template <typename Derived, typename F>
Eigen::Index cumulativeIndex(const Eigen::MatrixBase<Derived>& sigma, double t, F f) {
  double total = 0.0;
  for (Eigen::Index i = 0; i < sigma.size(); ++i) total += f(static_cast<double>(sigma(i)));
  if (total == 0.0) return 1;
  double running = 0.0;
  for (Eigen::Index k = 0; k < sigma.size(); ++k) {
    running += f(static_cast<double>(sigma(k)));
    if (running / total >= t) return k + 1;
  }
  return sigma.size();  // rounding left the sum a hair below t: the whole spectrum
}

/// kohya's clamp to [1, n - 1] (it never keeps the full rank), 1 when n = 1.
inline Eigen::Index kohyaClamp(Eigen::Index index, Eigen::Index n) {
  return std::max<Eigen::Index>(1, std::min(index, n - 1));
}

}  // namespace lora::detail

namespace lora::linalg {

/// \brief Threshold rank: #{σ_i > relative · σ_1}, at least 1. With relative = 0.01 this is the
/// original article's "effective rank" (σ_i above 1% of σ_1).
template <typename Derived>
Eigen::Index thresholdRank(const Eigen::MatrixBase<Derived>& sigma, double relative = 0.01) {
  detail::checkSpectrum("thresholdRank", sigma);
  if (!(relative >= 0.0 && relative < 1.0))
    detail::fail("thresholdRank", "expected a relative threshold in [0, 1), got {}", relative);
  const double cut = relative * static_cast<double>(sigma(0));
  Eigen::Index count = 0;
  for (Eigen::Index i = 0; i < sigma.size(); ++i)
    count += static_cast<double>(sigma(i)) > cut ? 1 : 0;
  return std::max<Eigen::Index>(count, 1);
}

/// \brief Cumulative-σ rank: the smallest k with Σ_{i<=k} σ_i >= t · Σ σ_i, 0 < t <= 1 (the
/// original article's rank_90 with t = 0.9).
template <typename Derived>
Eigen::Index cumulativeRank(const Eigen::MatrixBase<Derived>& sigma, double t = 0.9) {
  detail::checkSpectrum("cumulativeRank", sigma);
  detail::checkFraction("cumulativeRank", t);
  return detail::cumulativeIndex(sigma, t, [](double s) { return s; });
}

/// \brief Energy rank: the smallest k with Σ_{i<=k} σ_i² >= t · Σ σ_i², 0 < t <= 1 (the rule of
/// PEFT's `convert_to_lora`).
/// \code
/// Eigen::VectorXd sigma(3); sigma << 3, 1, 0.1;
/// lora::linalg::energyRank(sigma, 0.9);   // 1: 9 / 10.01 >= 0.9
/// \endcode
template <typename Derived>
Eigen::Index energyRank(const Eigen::MatrixBase<Derived>& sigma, double t) {
  detail::checkSpectrum("energyRank", sigma);
  detail::checkFraction("energyRank", t);
  return detail::cumulativeIndex(sigma, t, [](double s) { return s * s; });
}

/// \brief kohya's `sv_ratio` (sd-scripts `networks/resize_lora.py`, `index_sv_ratio`):
/// #{σ_i > σ_1 / ratio} for ratio >= 1, clamped to [1, n - 1] as kohya does.
template <typename Derived>
Eigen::Index kohyaSvRatio(const Eigen::MatrixBase<Derived>& sigma, double ratio) {
  detail::checkSpectrum("kohyaSvRatio", sigma);
  if (!(std::isfinite(ratio) && ratio >= 1.0))
    detail::fail("kohyaSvRatio", "expected a finite ratio >= 1, got {}", ratio);
  const double cut = static_cast<double>(sigma(0)) / ratio;
  Eigen::Index count = 0;
  for (Eigen::Index i = 0; i < sigma.size(); ++i)
    count += static_cast<double>(sigma(i)) > cut ? 1 : 0;
  return detail::kohyaClamp(count, sigma.size());
}

/// \brief kohya's `sv_cumulative` (`index_sv_cumulative`): the cumulative-σ rank for t, clamped
/// to [1, n - 1].
template <typename Derived>
Eigen::Index kohyaSvCumulative(const Eigen::MatrixBase<Derived>& sigma, double t) {
  detail::checkSpectrum("kohyaSvCumulative", sigma);
  detail::checkFraction("kohyaSvCumulative", t);
  return detail::kohyaClamp(detail::cumulativeIndex(sigma, t, [](double s) { return s; }),
                            sigma.size());
}

/// \brief kohya's `sv_fro` (`index_sv_fro`): the smallest k keeping a fraction t of the
/// Frobenius norm, Σ_{i<=k} σ_i² >= t² Σ σ_i², clamped to [1, n - 1].
template <typename Derived>
Eigen::Index kohyaSvFro(const Eigen::MatrixBase<Derived>& sigma, double t) {
  detail::checkSpectrum("kohyaSvFro", sigma);
  detail::checkFraction("kohyaSvFro", t);
  return detail::kohyaClamp(detail::cumulativeIndex(sigma, t * t, [](double s) { return s * s; }),
                            sigma.size());
}

/// \brief Knee rank: with the spectrum normalized to the unit square (x_i = i / (n - 1),
/// y_i = (σ_i - σ_n) / (σ_1 - σ_n)), the k = i + 1 whose point lies farthest below the chord from
/// (0, 1) to (1, 0), i.e. maximizing 1 - x_i - y_i (Satopää et al., "Finding a Kneedle in a
/// Haystack", 2011). 1 for n < 3 or a flat spectrum.
template <typename Derived>
Eigen::Index kneeRank(const Eigen::MatrixBase<Derived>& sigma) {
  detail::checkSpectrum("kneeRank", sigma);
  const Eigen::Index n = sigma.size();
  const double top = static_cast<double>(sigma(0)), bottom = static_cast<double>(sigma(n - 1));
  if (n < 3 || top == bottom) return 1;
  Eigen::Index best = 0;
  double bestGap = -1.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double x = static_cast<double>(i) / static_cast<double>(n - 1);
    const double y = (static_cast<double>(sigma(i)) - bottom) / (top - bottom);
    const double gap = 1.0 - x - y;
    if (gap > bestGap) {
      bestGap = gap;
      best = i;
    }
  }
  return best + 1;
}

/// \brief Entropy effective rank exp(-Σ p_i log p_i) with p_i = σ_i / Σ σ (Roy & Vetterli, "The
/// effective rank: a measure of effective dimensionality", 2007). In [1, n]; 0 when all σ = 0.
template <typename Derived>
double entropyEffectiveRank(const Eigen::MatrixBase<Derived>& sigma) {
  detail::checkSpectrum("entropyEffectiveRank", sigma);
  const double total = sigma.template cast<double>().sum();
  if (total == 0.0) return 0.0;
  double entropy = 0.0;
  for (Eigen::Index i = 0; i < sigma.size(); ++i) {
    const double p = static_cast<double>(sigma(i)) / total;
    if (p > 0.0) entropy -= p * std::log(p);
  }
  return std::exp(entropy);
}

/// \brief Stable rank Σ σ_i² / σ_1² (= ||M||_F² / ||M||_2²), in [1, n]; 0 when all σ = 0.
template <typename Derived>
double stableRank(const Eigen::MatrixBase<Derived>& sigma) {
  detail::checkSpectrum("stableRank", sigma);
  const double top = static_cast<double>(sigma(0));
  if (top == 0.0) return 0.0;
  return sigma.template cast<double>().squaredNorm() / (top * top);
}

/// \brief The LoRA paper's normalized subspace similarity (Hu et al. 2021, section 7):
/// φ(U1, U2, i, j) = ||U1_i^T U2_j||_F² / min(i, j) in [0, 1], where U1_i and U2_j are the first i
/// and j columns of two matrices with orthonormal columns (e.g. the right singular vectors of two
/// A factors, FactoredSVD::matrixV()). 1 when one subspace contains the other.
template <typename Derived1, typename Derived2>
double subspaceSimilarity(const Eigen::MatrixBase<Derived1>& U1,
                          const Eigen::MatrixBase<Derived2>& U2, Eigen::Index i, Eigen::Index j) {
  constexpr std::string_view where = "subspaceSimilarity";
  if (U1.rows() != U2.rows())
    detail::fail(where, "expected bases of the same dimension, got {} and {} rows", U1.rows(),
                 U2.rows());
  if (i < 1 || i > U1.cols() || j < 1 || j > U2.cols())
    detail::fail(where, "expected 1 <= i <= {} and 1 <= j <= {}, got i = {} and j = {}", U1.cols(),
                 U2.cols(), i, j);
  const double overlap =
      (U1.leftCols(i).transpose() * U2.leftCols(j)).template cast<double>().squaredNorm();
  return overlap / static_cast<double>(std::min(i, j));
}

}  // namespace lora::linalg
