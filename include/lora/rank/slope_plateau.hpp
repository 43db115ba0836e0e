#pragma once
/// \file slope_plateau.hpp
/// \brief A loss-plateau detector that works: the least-squares slope of the recent losses,
/// tested against their own noise.

#include <cstddef>
#include <deque>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"  // lora::Error, which these throw
#include "lora/rank/decision.hpp"

namespace lora::rank {

/// Parameters of SlopePlateau.
struct SlopePlateauOptions {
  Eigen::Index initialRank = 8;
  Eigen::Index minRank = 2;
  Eigen::Index maxRank = 64;
  std::size_t window = 10;               ///< losses in one fit (>= 4); also the cool-down
  double minRelativeImprovement = 0.01;  ///< improvement over a window that still counts
  double tCritical = 2.0;                ///< confidence multiplier on the slope's standard error
  double increaseFactor = 1.5;           ///< new rank = max(r + 1, int(r · factor)), capped
  /// Grow again only if the last growth paid: the plateau after it must sit at least
  /// minRelativeImprovement below the plateau before it. Otherwise the loss is at its floor
  /// (noise, or the task needs no more rank) and growth stops (`growth_did_not_help`) until the
  /// loss is seen improving again.
  bool requirePayoff = true;
};

/// The least-squares line through the last losses and its uncertainty.
struct SlopeFit {
  double slope = 0;          ///< per step
  double standardError = 0;  ///< of the slope, from the residuals (n − 2 degrees of freedom)
  double mean = 0;           ///< of the losses
};

}  // namespace lora::rank

namespace lora::detail {
/// fitSlope() on the losses in double, compiled in liblorapp (src/rank/slope_plateau.cpp).
rank::SlopeFit fitSlopeDouble(const Eigen::ArrayXd& v);
}  // namespace lora::detail

namespace lora::rank {

/// Fits loss_t = a + b·t to \p y (t = 0..n−1, n >= 3).
template <typename Derived>
SlopeFit fitSlope(const Eigen::DenseBase<Derived>& y) {
  return detail::fitSlopeDouble(y.derived().template cast<double>().array());
}

/// \brief Grows the rank when the loss has stopped improving, and only then.
///
/// Over the last `window` losses, with the fitted slope b and its standard error se, the
/// improvement over the window is −b·(window − 1), known to within ±tCritical·se·(window − 1):
/// - its upper bound below minRelativeImprovement·|mean loss|: a plateau
///   (`plateau_increase_rank`, `at_max_rank` or `growth_did_not_help`), after which the next
///   `window` losses are a cool-down (`cooldown`);
/// - its lower bound above that: `improving`;
/// - checked first, the loss rising beyond its noise (b > tCritical·se) by more than that amount:
///   `loss_increasing` (a learning-rate problem, not a rank problem: no adjustment);
/// - otherwise `no_clear_signal`; fewer than `window` losses: `insufficient_history`.
/// Unlike the article's rule, zero differences and noise do not hide a plateau: noise widens the
/// interval, so a noisy loss is called a plateau only once its slope is pinned near zero.
/// A plateau is also where training ends up at its noise floor, where more rank cannot help; with
/// `requirePayoff` a growth that did not lower the next plateau stops further growth.
class SlopePlateau {
 public:
  using Options = SlopePlateauOptions;

  explicit SlopePlateau(const Options& options = {});

  static std::string name() { return "slope_plateau"; }

  Decision observe(double loss);

  Eigen::Index currentRank() const noexcept { return m_rank; }
  void setRank(Eigen::Index rank);
  /// The last fit (zero until a full window was seen).
  const SlopeFit& lastFit() const noexcept { return m_fit; }
  const Options& options() const noexcept { return m_opt; }

 private:
  Eigen::ArrayXd window() const;

  Options m_opt;
  Eigen::Index m_rank = 8;
  std::deque<double> m_losses;
  std::size_t m_cooldown = 0;
  SlopeFit m_fit;
  bool m_grown = false, m_stopped = false;
  double m_plateauBefore = 0;
};

}  // namespace lora::rank
