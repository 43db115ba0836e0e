#pragma once
/// \file triplet_importance.hpp
/// \brief AdaLoRA-style importance of the singular triplets of plain LoRA layers, and pruning of
/// the globally least important triplets down to a budget.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/factored_svd.hpp"

namespace lora::rank {

/// Smoothing of TripletImportance; the defaults are PEFT's AdaLoraConfig (beta1 = beta2 = 0.85).
struct TripletImportanceOptions {
  double beta1 = 0.85;  ///< EMA weight of the past for the importance
  double beta2 = 0.85;  ///< EMA weight of the past for the uncertainty
};

/// \brief Per-layer importance of the singular triplets (σ_i, u_i, v_i) of s·B·A.
///
/// Sensitivity (AdaLoRA, Zhang et al. 2023, eq. 7, first-order Taylor): I_i = |σ_i · ∂L/∂σ_i|
/// with ∂L/∂σ_i = u_i^T G v_i and G = dY^T X the gradient with respect to the effective weight,
/// computed as (dY u_i)·(X v_i), never forming the out x in G. Smoothing (eqs. 8–9, as PEFT's
/// RankAllocator.update_ipt): Ī ← β1·Ī + (1 − β1)·I, Ū ← β2·Ū + (1 − β2)·|I − Ī|; the score is
/// Ī·Ū.
///
/// AdaLoRA's P·Λ·Q keeps each triplet's identity between steps; a plain LoRA layer's SVD is
/// recomputed each time, so triplet i is "the i-th largest" at each step. While the spectrum keeps
/// its order that is the same triplet; where two σ cross, their histories swap. Documented, not
/// hidden: it is the price of running AdaLoRA's allocation on PEFT-layout layers.
class TripletImportance {
 public:
  using Options = TripletImportanceOptions;

  explicit TripletImportance(const Options& options = {}) : m_opt(options) {
    constexpr const char* where = "TripletImportance::TripletImportance";
    if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1))
      detail::fail(where, "expected beta1 and beta2 in [0, 1), got {} and {}", options.beta1,
                   options.beta2);
  }

  /// I_i for the batch \p X (N x in) and output gradient \p dY (N x out) of \p layer.
  template <typename Scalar, typename DX, typename DdY>
  static Eigen::VectorXd sensitivity(const Layer<Scalar>& layer, const Eigen::MatrixBase<DX>& X,
                                     const Eigen::MatrixBase<DdY>& dY) {
    constexpr const char* where = "TripletImportance::sensitivity";
    if (X.cols() != layer.inFeatures() || dY.cols() != layer.outFeatures() || X.rows() != dY.rows())
      detail::fail(where, "expected X (N x {}) and dY (N x {}) with the same N, got {}x{} and {}x{}",
                   layer.inFeatures(), layer.outFeatures(), X.rows(), X.cols(), dY.rows(), dY.cols());
    if (!X.allFinite() || !dY.allFinite())
      detail::fail(where, "expected finite X and dY, got NaN or Inf");
    const Eigen::MatrixXd B = layer.B().template cast<double>();
    const Eigen::MatrixXd A = layer.A().template cast<double>();
    const linalg::FactoredSVD<double> svd(B, A, layer.scaling());
    const Eigen::MatrixXd XV = X.template cast<double>() * svd.matrixV();   // N x k
    const Eigen::MatrixXd YU = dY.template cast<double>() * svd.matrixU();  // N x k
    const Eigen::VectorXd dSigma = (YU.array() * XV.array()).colwise().sum().transpose();
    return (svd.singularValues().array() * dSigma.array()).abs().matrix();
  }

  /// One step: the sensitivity of this batch enters the moving averages.
  template <typename Scalar, typename DX, typename DdY>
  void update(const Layer<Scalar>& layer, const Eigen::MatrixBase<DX>& X,
              const Eigen::MatrixBase<DdY>& dY) {
    observe(sensitivity(layer, X, dY));
  }

  /// One step from a given sensitivity vector (one entry per triplet, finite, >= 0). A triplet
  /// seen for the first time starts from zero averages, as PEFT's zero-initialized EMAs.
  void observe(const Eigen::VectorXd& I) {
    if (!(I.allFinite() && (I.array() >= 0).all()))
      detail::fail("TripletImportance::observe", "expected finite sensitivities >= 0, got {}",
                   I.size() ? fmt::format("min {} max {}", I.minCoeff(), I.maxCoeff()) : "none");
    const Eigen::Index old = m_importance.size();
    m_importance.conservativeResize(I.size());
    m_uncertainty.conservativeResize(I.size());
    if (I.size() > old) {
      m_importance.tail(I.size() - old).setZero();
      m_uncertainty.tail(I.size() - old).setZero();
    }
    m_importance = m_opt.beta1 * m_importance + (1 - m_opt.beta1) * I;
    m_uncertainty = m_opt.beta2 * m_uncertainty + (1 - m_opt.beta2) * (I - m_importance).cwiseAbs();
  }

  /// Ī ⊙ Ū, one score per triplet (empty before the first step).
  Eigen::VectorXd scores() const { return m_importance.cwiseProduct(m_uncertainty); }
  const Eigen::VectorXd& smoothedImportance() const noexcept { return m_importance; }
  const Eigen::VectorXd& uncertainty() const noexcept { return m_uncertainty; }

  /// After Layer::keepDirections(\p kept) with \p kept in increasing order (so the kept triplets
  /// keep their order), the kept triplets' histories move to their new positions.
  void keep(const std::vector<Eigen::Index>& kept) {
    Eigen::VectorXd importance(static_cast<Eigen::Index>(kept.size())), uncertainty(importance.size());
    for (std::size_t j = 0; j < kept.size(); ++j) {
      const Eigen::Index i = kept[j];
      if (i < 0 || i >= m_importance.size() || (j > 0 && i <= kept[j - 1]))
        detail::fail("TripletImportance::keep",
                     "expected increasing indices below {}, got {} at position {}",
                     m_importance.size(), i, j);
      importance(static_cast<Eigen::Index>(j)) = m_importance(i);
      uncertainty(static_cast<Eigen::Index>(j)) = m_uncertainty(i);
    }
    m_importance = std::move(importance);
    m_uncertainty = std::move(uncertainty);
  }

 private:
  Options m_opt;
  Eigen::VectorXd m_importance, m_uncertainty;
};

/// \brief Which triplets each layer keeps so that the total is \p budget: the globally highest
/// scores win (PEFT's RankAllocator masks every score at or below the (total − budget)-th
/// smallest). Every layer keeps at least \p minPerLayer (a LoRA layer cannot have rank 0;
/// PEFT's AdaLoRA can zero a whole layer), and those count toward the budget. Ties go to the
/// earlier layer, then the larger σ. Returns increasing indices per layer.
inline std::vector<std::vector<Eigen::Index>> keepToBudget(
    const std::vector<Eigen::VectorXd>& scores, Eigen::Index budget, Eigen::Index minPerLayer = 1) {
  constexpr const char* where = "keepToBudget";
  if (minPerLayer < 1) detail::fail(where, "expected minPerLayer >= 1, got {}", minPerLayer);
  Eigen::Index total = 0;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    if (scores[l].size() < minPerLayer)
      detail::fail(where, "expected at least {} scores for layer {}, got {}", minPerLayer, l,
                   scores[l].size());
    if (!(scores[l].allFinite() && (scores[l].array() >= 0).all()))
      detail::fail(where, "expected finite scores >= 0 for layer {}, got NaN, Inf or negative", l);
    total += scores[l].size();
  }
  const Eigen::Index floor = minPerLayer * static_cast<Eigen::Index>(scores.size());
  if (budget < floor || budget > total)
    detail::fail(where, "expected a budget in [{}, {}] ({} per layer, {} triplets), got {}", floor,
                 total, minPerLayer, total, budget);
  struct Entry {
    double score;
    std::size_t layer;
    Eigen::Index index;
  };
  std::vector<std::vector<bool>> chosen(scores.size());
  std::vector<Entry> rest;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    chosen[l].assign(static_cast<std::size_t>(scores[l].size()), false);
    // the minimum: each layer's own best scores
    std::vector<Eigen::Index> order(static_cast<std::size_t>(scores[l].size()));
    std::iota(order.begin(), order.end(), Eigen::Index{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return scores[l](a) > scores[l](b); });
    for (std::size_t j = 0; j < order.size(); ++j) {
      if (static_cast<Eigen::Index>(j) < minPerLayer)
        chosen[l][static_cast<std::size_t>(order[j])] = true;
      else
        rest.push_back({scores[l](order[j]), l, order[j]});
    }
  }
  std::stable_sort(rest.begin(), rest.end(), [](const Entry& a, const Entry& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.index < b.index;
  });
  for (Eigen::Index k = 0; k < budget - floor; ++k) {
    const Entry& e = rest[static_cast<std::size_t>(k)];
    chosen[e.layer][static_cast<std::size_t>(e.index)] = true;
  }
  std::vector<std::vector<Eigen::Index>> keep(scores.size());
  for (std::size_t l = 0; l < scores.size(); ++l)
    for (std::size_t i = 0; i < chosen[l].size(); ++i)
      if (chosen[l][i]) keep[l].push_back(static_cast<Eigen::Index>(i));
  return keep;
}

}  // namespace lora::rank
