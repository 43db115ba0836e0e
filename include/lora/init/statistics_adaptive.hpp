#pragma once
/// \file statistics_adaptive.hpp
/// \brief The article's initialization from the pretrained weight's statistics.

#include <memory>
#include <string>

#include "lora/init/initializer.hpp"
#include "lora/linalg/weight_statistics.hpp"

namespace lora::init {

/// \brief statistics-adaptive: scale = ‖W‖₂·strength; with the effective rank e (σ_i > 1% σ_1),
/// std_A = std(W)·scale·0.5 and std_B = std(W)·scale·0.1 when r <= e/2 (integer division, as
/// the article's `effective_rank // 2`), else 0.2 and 0.05; A ~ N(0, std_A²), B ~ N(0, std_B²).
///
/// Source: the article's `AdaptiveLoRAInitializer.adaptive_init`. The statistics come from
/// \p statistics when given (compute them once per layer with linalg::weightStatistics), else
/// from the request's base weight (one SVD-class computation per layer: O(out·in·min(out, in))).
/// Where the article silently falls back to xavier_lora for an unknown layer, this throws: a layer
/// without statistics is a caller error. B ≠ 0: s·B·A ≠ 0 at step 0 (wrap in SubtractDelta to keep
/// the output); the policy itself changes no base weight.
struct StatisticsAdaptive {
  double strength = 1.0;  ///< the article's adaptation_strength
  /// Precomputed statistics of this layer's W; shared, so copies stay cheap.
  std::shared_ptr<const linalg::WeightStatistics> statistics{};

  static constexpr bool dataDependent = true;
  static std::string name() { return "statistics_adaptive"; }

  /// (std_A, std_B) for rank \p rank from \p s.
  std::pair<double, double> stds(const linalg::WeightStatistics& s, Eigen::Index rank) const {
    const double scale = s.spectralNorm * strength;
    const bool lowRank = rank <= s.effectiveRank / 2;
    return {s.std * scale * (lowRank ? 0.5 : 0.2), s.std * scale * (lowRank ? 0.1 : 0.05)};
  }

  template <typename Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    constexpr const char* where = "StatisticsAdaptive::initialize";
    if (!(std::isfinite(strength) && strength > 0.0))
      detail::fail(where, "expected a positive finite strength, got {}", strength);
    linalg::WeightStatistics computed;
    const linalg::WeightStatistics* s = statistics.get();
    if (s == nullptr) {
      requireWeight(request, where);
      computed = linalg::weightStatistics(request.weight);
      s = &computed;
    } else if (s->rows != request.outFeatures || s->cols != request.inFeatures) {
      detail::fail(where, "expected statistics of a {}x{} weight, got {}x{}", request.outFeatures,
                   request.inFeatures, s->rows, s->cols);
    }
    const auto [stdA, stdB] = stds(*s, request.rank);
    if (!(stdA > 0.0))
      detail::fail(where,
                   "expected a weight with non-zero std and spectral norm, got std {} and "
                   "spectral norm {}",
                   s->std, s->spectralNorm);
    Factors<Scalar> f;
    f.A.resize(request.rank, request.inFeatures);
    f.B.resize(request.outFeatures, request.rank);
    fillNormal(f.A, rng, 0.0, stdA);
    fillNormal(f.B, rng, 0.0, stdB);
    return f;
  }
};

}  // namespace lora::init
