#pragma once
/// \file eva.hpp
/// \brief EVA (Explained Variance Adaptation): A from the top right singular vectors of the
/// layer's input activations, B = 0.
///
/// Source: Paischer et al., "One Initialization to Rule them All: Fine-tuning via Explained
/// Variance Adaptation" (2024); PEFT `init_lora_weights="eva"` (`get_eva_state_dict`,
/// `_load_eva_state_dict`). The statistics and the rank redistribution are in eva_statistics.hpp.

#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "lora/detail/eigen.hpp"

#include "lora/init/eva_statistics.hpp"
#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief What an Eva policy holds: the components (q x in, rows) and their singular values.
struct EvaComponents {
  Eigen::MatrixXd components;
  Eigen::VectorXd singularValues;
};

/// \brief EVA's initialization of one layer: A = the first r rows of the collected components V
/// (the top right singular vectors of the centered input activations), B = 0.
///
/// With `whiten` (PEFT `EvaConfig.whiten`), row i is divided by sqrt(S_i), S the singular values
/// (PEFT: `u /= singular_values_[:rank].sqrt()`). The request's rank must be at most the number of
/// components collected (use evaRankDistribution for the ranks; a layer that got 0 gets no
/// adapter). Convergence is not required here: check EvaCollector::converged(rank) first, as PEFT
/// does before it writes A.
///
/// Changes no base weight (B = 0, so s·B·A = 0 and the output is the base model's at step 0).
/// Cost: copying r·in values. The policy shares its components through a std::shared_ptr, so
/// copying it (one per layer, and inside the Layer) is cheap.
///
/// \code
/// lora::init::EvaCollector<float> stats(W.cols(), lora::init::evaMaxComponents(16, 2.0));
/// for (const auto& X : batches) stats.update(X);
/// lora::Layer<float> layer(W, {.rank = 16, .alpha = 32}, lora::init::Eva::fromCollector(stats));
/// \endcode
struct Eva {
  static constexpr bool dataDependent = true;

  std::shared_ptr<const EvaComponents> state;  ///< the components and singular values
  bool whiten = false;                         ///< divide row i of A by sqrt(S_i)

  static std::string name() { return "eva"; }

  Eva() = default;

  /// A policy for explicit \p components (q x in, rows; the right singular vectors in decreasing
  /// order) and their \p singularValues (q, non-negative), e.g. saved from an EvaCollector.
  template <typename DerivedV, typename DerivedS>
  Eva(const Eigen::MatrixBase<DerivedV>& components,
      const Eigen::MatrixBase<DerivedS>& singularValues, bool whitenRows = false)
      : whiten(whitenRows) {
    constexpr const char* where = "Eva::Eva";
    if (components.rows() < 1 || components.cols() < 1)
      detail::fail(where, "expected at least one component (q x in, q, in >= 1), got {}x{}",
                   components.rows(), components.cols());
    if (singularValues.size() != components.rows() ||
        (singularValues.rows() != 1 && singularValues.cols() != 1))
      detail::fail(where, "expected a vector of {} singular values, got {}x{}", components.rows(),
                   singularValues.rows(), singularValues.cols());
    auto held = std::make_shared<EvaComponents>();
    held->components = components.template cast<double>();
    held->singularValues = singularValues.template cast<double>().reshaped();
    if (!held->components.allFinite())
      detail::fail(where, "expected finite components, got NaN or Inf");
    if (!held->singularValues.allFinite() || (held->singularValues.array() < 0.0).any())
      detail::fail(where,
                   "expected finite non-negative singular values, got a negative, NaN or Inf");
    state = std::move(held);
  }

  /// A policy holding a copy of \p collector's components and singular values (it needs at least
  /// one batch).
  template <typename Scalar>
  static Eva fromCollector(const EvaCollector<Scalar>& collector, bool whitenRows = false) {
    if (!collector.hasComponents())
      detail::fail("Eva::fromCollector", "expected a collector with at least one batch, got none");
    return Eva(collector.components(), collector.singularValues(), whitenRows);
  }

  /// q, the number of components held (0 when empty).
  Eigen::Index componentCount() const noexcept { return state ? state->components.rows() : 0; }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& /*rng*/) const;
};

template <typename Scalar>
Factors<Scalar> Eva::initialize(const Request<Scalar>& request, Rng& /*rng*/) const {
  constexpr const char* where = "Eva::initialize";
  if (!state) detail::fail(where, "expected components (build Eva from an EvaCollector), got none");
  const Eigen::MatrixXd& V = state->components;
  if (request.inFeatures != V.cols())
    detail::fail(where, "expected a layer with {} in features (the components' length), got {}",
                 V.cols(), request.inFeatures);
  if (request.rank < 1 || request.rank > V.rows())
    detail::fail(where, "expected a rank in [1, {}] (the components collected), got {}", V.rows(),
                 request.rank);
  Eigen::MatrixXd A = V.topRows(request.rank);
  if (whiten) {
    for (Eigen::Index i = 0; i < request.rank; ++i) {
      const double s = state->singularValues(i);
      if (!(s > 0.0))
        detail::fail(where, "expected positive singular values to whiten by, got {} at {}", s, i);
      A.row(i) /= std::sqrt(s);
    }
  }
  Factors<Scalar> f;
  f.A = A.template cast<Scalar>();
  f.B.setZero(request.outFeatures, request.rank);
  f.baseUpdate = BaseUpdate::Keep;
  return f;
}

// Compiled once in liblorapp (src/init/svd_family.cpp) unless LORA_NO_EXTERN_TEMPLATES.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template Factors<float> Eva::initialize<float>(const Request<float>&, Rng&) const;
extern template Factors<double> Eva::initialize<double>(const Request<double>&, Rng&) const;
#endif

}  // namespace lora::init
