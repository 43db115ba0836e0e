#pragma once
/// \file triplet_importance.hpp
/// \brief AdaLoRA-style importance of the singular triplets of plain LoRA layers, and pruning of
/// the globally least important triplets down to a budget.

#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"  // lora::Error, which these throw
#include "lora/layer.hpp"

namespace lora::detail {
/// TripletImportance::sensitivity() on double data, compiled in liblorapp
/// (src/rank/triplet_importance.cpp): \p B and \p A are the layer's factors, \p scaling its
/// scaling, \p in and \p out its feature counts.
Eigen::VectorXd tripletSensitivityDouble(const Eigen::MatrixXd& B, const Eigen::MatrixXd& A,
                                         double scaling, Eigen::Index in, Eigen::Index out,
                                         const Eigen::Ref<const Eigen::MatrixXd>& X,
                                         const Eigen::Ref<const Eigen::MatrixXd>& dY);
}  // namespace lora::detail

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

  explicit TripletImportance(const Options& options = {});

  /// I_i for the batch \p X (N x in) and output gradient \p dY (N x out) of \p layer.
  template <typename Scalar, typename DX, typename DdY>
  static Eigen::VectorXd sensitivity(const Layer<Scalar>& layer, const Eigen::MatrixBase<DX>& X,
                                     const Eigen::MatrixBase<DdY>& dY) {
    return detail::tripletSensitivityDouble(layer.B().template cast<double>(),
                                            layer.A().template cast<double>(), layer.scaling(),
                                            layer.inFeatures(), layer.outFeatures(),
                                            X.template cast<double>(), dY.template cast<double>());
  }

  /// One step: the sensitivity of this batch enters the moving averages.
  template <typename Scalar, typename DX, typename DdY>
  void update(const Layer<Scalar>& layer, const Eigen::MatrixBase<DX>& X,
              const Eigen::MatrixBase<DdY>& dY) {
    observe(sensitivity(layer, X, dY));
  }

  /// One step from a given sensitivity vector (one entry per triplet, finite, >= 0). A triplet
  /// seen for the first time starts from zero averages, as PEFT's zero-initialized EMAs.
  void observe(const Eigen::VectorXd& I);

  /// Ī ⊙ Ū, one score per triplet (empty before the first step).
  Eigen::VectorXd scores() const;
  const Eigen::VectorXd& smoothedImportance() const noexcept { return m_importance; }
  const Eigen::VectorXd& uncertainty() const noexcept { return m_uncertainty; }

  /// After Layer::keepDirections(\p kept) with \p kept in increasing order (so the kept triplets
  /// keep their order), the kept triplets' histories move to their new positions.
  void keep(const std::vector<Eigen::Index>& kept);

 private:
  Options m_opt;
  Eigen::VectorXd m_importance, m_uncertainty;
};

/// \brief Which triplets each layer keeps so that the total is \p budget: the globally highest
/// scores win (PEFT's RankAllocator masks every score at or below the (total − budget)-th
/// smallest). Every layer keeps at least \p minPerLayer (a LoRA layer cannot have rank 0;
/// PEFT's AdaLoRA can zero a whole layer), and those count toward the budget. Ties go to the
/// earlier layer, then the larger σ. Returns increasing indices per layer.
std::vector<std::vector<Eigen::Index>> keepToBudget(const std::vector<Eigen::VectorXd>& scores,
                                                    Eigen::Index budget,
                                                    Eigen::Index minPerLayer = 1);

}  // namespace lora::rank
