#pragma once
/// \file eva_statistics.hpp
/// \brief EVA's activation statistics: an incremental PCA of one layer's inputs, its convergence
/// test, and the rank redistribution across layers by explained variance.
///
/// Source: Paischer et al., "One Initialization to Rule them All: Fine-tuning via Explained
/// Variance Adaptation" (2024), as PEFT implements it (`peft/tuners/lora/eva.py`, `SVDHook`,
/// `_get_rank_distribution`; `peft/utils/incremental_pca.py`, `IncrementalPCA.partial_fit`).
///
/// Per batch X (N x in) the collector keeps the top q right singular vectors V (q x in) and
/// singular values S of all centered activations seen so far (Ross et al., "Incremental Learning
/// for Robust Visual Tracking", 2008, with the mean correction of scikit-learn's IncrementalPCA):
///
///     M = [ diag(S)·V ;  X − mean(X) ;  sqrt(n·N / (n + N)) · (μ_old − mean(X))^T ],  M = U Σ W^T,
///     V ← W[:, :q]^T (signs fixed: the largest |entry| of each row positive),  S ← Σ[:q]
///
/// (the first batch is just X − mean(X)). The explained variance ratio of component i is
/// S_i² / Σ_j Σ_rows (x_j − μ_j)², the share of the total variance of *all* in features.
///
/// \code
/// lora::init::EvaCollector<float> q(4096, lora::init::evaMaxComponents(16, 2.0));
/// for (const auto& X : batches) q.update(X);        // N x in activations, any Eigen expression
/// bool ready = q.converged(16);                        // first 16 components stable (cos >= τ)
/// \endcode

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/random.hpp"

namespace lora::detail {

/// Python's round() of a finite double to an integer: to nearest, halves to even.
inline Eigen::Index evaRoundHalfEven(double x) {
  const double lower = std::floor(x);
  const double diff = x - lower;
  auto result = static_cast<Eigen::Index>(lower);
  if (diff > 0.5 || (diff == 0.5 && result % 2 != 0)) ++result;
  return result;
}

/// scikit-learn's svd_flip with u_based_decision=False, on the rows of \p V: each row is negated
/// when its entry of largest magnitude (the first such) is negative.
template <typename Matrix>
void evaFlipRowSigns(Matrix& V) {
  for (Eigen::Index i = 0; i < V.rows(); ++i) {
    Eigen::Index j = 0;
    V.row(i).cwiseAbs().maxCoeff(&j);
    if (V(i, j) < 0) V.row(i) = -V.row(i);
  }
}

/// Replaces the columns of \p Y (m x k, k <= m) by an orthonormal basis of their span (thin Q of a
/// Householder QR).
template <typename Matrix>
void evaOrthonormalizeColumns(Matrix& Y) {
  Y = linalg::ThinQR<typename Matrix::Scalar>(std::move(Y)).matrixQ();
}

/// Top \p q right singular vectors (as rows, q x n) and singular values of \p M (m x n), by the
/// randomized range finder with \p powerIterations subspace iterations on a Gaussian sketch of
/// \p sketch columns (Halko, Martinsson & Tropp, "Finding Structure with Randomness", 2011,
/// algorithms 4.4 and 5.1; what torch.svd_lowrank computes). Needs q <= sketch <= min(m, n).
template <typename Matrix, typename Vector>
bool evaRandomizedRightSvd(const Matrix& M, Eigen::Index q, Eigen::Index sketch,
                           int powerIterations, std::uint64_t seed, Matrix& V, Vector& S) {
  Rng rng(seed);
  Matrix omega(M.cols(), sketch);
  fillNormal(omega, rng, 0.0, 1.0);
  Matrix Y = M * omega;  // m x k
  evaOrthonormalizeColumns(Y);
  for (int it = 0; it < powerIterations; ++it) {
    Matrix Z = M.transpose() * Y;  // n x k
    evaOrthonormalizeColumns(Z);
    Y.noalias() = M * Z;
    evaOrthonormalizeColumns(Y);
  }
  // M ≈ Y·(Y^T M); the right singular vectors of Y^T M are the left ones of its transpose.
  const Matrix Bt = M.transpose() * Y;  // n x k
  const auto svd = linalg::denseSVD(Bt, Eigen::ComputeThinU);
  if (svd.info != Eigen::Success) return false;
  V = svd.U.leftCols(q).transpose();
  S = svd.S.head(q);
  return true;
}

/// Exact top \p q right singular vectors (rows) and singular values of \p M.
template <typename Matrix, typename Vector>
bool evaExactRightSvd(const Matrix& M, Eigen::Index q, Matrix& V, Vector& S) {
  const auto svd = linalg::denseSVD(M, Eigen::ComputeThinV);
  if (svd.info != Eigen::Success) return false;
  V = svd.V.leftCols(q).transpose();
  S = svd.S.head(q);
  return true;
}

}  // namespace lora::detail

namespace lora::init {

/// \brief PEFT's number of components per layer for EVA: round(r·ρ) with Python's round (halves to
/// even: r = 5, ρ = 1.5 gives 8; r = 3, ρ = 1.5 gives 4). Needs r >= 1 and a finite ρ >= 1
/// (PEFT `EvaConfig`: "`rho` must be >= 1.0"). Source: PEFT `_get_eva_state_dict`,
/// `max_components[name] = round(layer_rank * rho)`.
inline Eigen::Index evaMaxComponents(Eigen::Index rank, double rho) {
  constexpr const char* where = "evaMaxComponents";
  if (rank < 1) detail::fail(where, "expected a rank >= 1, got {}", rank);
  if (!(std::isfinite(rho) && rho >= 1.0))
    detail::fail(where, "expected a finite rho >= 1, got {}", rho);
  return detail::evaRoundHalfEven(static_cast<double>(rank) * rho);
}

/// \brief PEFT's `adjust_scaling_factors`: after the redistribution a layer of configured rank r
/// that got rank r' keeps alpha·r'/r, so s = alpha'/r' = alpha/r stays the same.
/// Source: PEFT `_load_eva_state_dict` (`alpha *= new_rank / r`).
inline double evaAdjustedAlpha(double alpha, Eigen::Index newRank, Eigen::Index rank) {
  constexpr const char* where = "evaAdjustedAlpha";
  if (!(std::isfinite(alpha) && alpha > 0.0))
    detail::fail(where, "expected a positive finite alpha, got {}", alpha);
  if (rank < 1 || newRank < 0)
    detail::fail(where, "expected rank >= 1 and newRank >= 0, got rank {} and newRank {}", rank,
                 newRank);
  return alpha * static_cast<double>(newRank) / static_cast<double>(rank);
}

/// How EvaCollector computes the SVD of its stacked matrix M ((q + N + 1) x in).
enum class EvaSvd {
  /// Randomized when 2·k·(powerIterations + 1) < min(rows, in) for the sketch size k, exact
  /// otherwise (decided from the shapes alone, so a run is reproducible).
  Auto,
  Exact,  ///< Eigen::BDCSVD of M: O(m·in·min(m, in)) for m = q + N + 1 rows
  /// PEFT's `lowrank=True`: sketch of k = 2q columns, O(m·in·k·(powerIterations + 1)); exact
  /// when k >= min(rows, in), where a sketch would not be smaller.
  Randomized,
};

/// Options of an EvaCollector; the defaults are PEFT's.
struct EvaCollectorOptions {
  double tau = 0.99;  ///< convergence threshold on the cosine similarity, in [0, 1]
  EvaSvd svd = EvaSvd::Auto;
  Eigen::Index sketchSize = 0;  ///< randomized: sketch columns k >= q; 0 means 2q (`lowrank_q`)
  int powerIterations = 4;      ///< randomized: subspace iterations (`lowrank_niter`)
  std::uint64_t seed = 42;      ///< randomized: the sketch's seed, reused for every batch
};

/// \brief EVA's statistics of one layer's input activations: an incremental PCA keeping the top
/// q = round(r·ρ) components, with PEFT's convergence test (see the file comment for the formula).
///
/// Source: PEFT `SVDHook.__call__` and `IncrementalPCA.partial_fit`. Mean and per-feature variance
/// are accumulated in double (as PEFT does); the SVD runs in Scalar. Each update costs one pass
/// over the batch plus the SVD of M: O(m·in·k·(powerIterations + 1)) randomized, O(m·in·min(m, in))
/// exact, m = q + N + 1; memory O(m·in). The in x in covariance is never formed.
///
/// Convergence (PEFT): after each update from the second on, cos_i = ⟨v_i, v_i_prev⟩ / (|v_i|
/// |v_i_prev|) for each component (signed, after the sign fix), and component i has converged when
/// cos_i >= τ. converged(k) asks it of the first k components (PEFT asks it of the layer's current
/// rank; k = 0 is always converged, like torch.all of nothing).
///
/// Differences from PEFT: PEFT skips (with a print) every batch with fewer than q rows; here only
/// the first batch needs q rows and smaller later batches are used. PEFT's SVD is always the
/// randomized one in float32; here EvaSvd picks. Every method that gets bad input throws
/// lora::Error and leaves the collector unchanged.
template <typename Scalar_>
class EvaCollector {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "lora::init::EvaCollector: Scalar must be float or double");

  /// A collector for a layer with \p inFeatures inputs keeping \p components = q components
  /// (1 <= q <= inFeatures; usually evaMaxComponents(r, ρ)).
  EvaCollector(Index inFeatures, Index components, const EvaCollectorOptions& options = {})
      : m_in(inFeatures), m_q(components), m_options(options) {
    constexpr const char* where = "EvaCollector::EvaCollector";
    if (inFeatures < 1) detail::fail(where, "expected inFeatures >= 1, got {}", inFeatures);
    if (components < 1 || components > inFeatures)
      detail::fail(where, "expected 1 <= components <= inFeatures = {}, got {}", inFeatures,
                   components);
    if (!(options.tau >= 0.0 && options.tau <= 1.0))
      detail::fail(where, "expected tau in [0, 1], got {}", options.tau);
    if (options.sketchSize != 0 && options.sketchSize < components)
      detail::fail(where, "expected sketchSize 0 (2q) or >= components = {}, got {}", components,
                   options.sketchSize);
    if (options.powerIterations < 0)
      detail::fail(where, "expected powerIterations >= 0, got {}", options.powerIterations);
    m_mean.setZero(inFeatures);
    m_m2.setZero(inFeatures);
  }

  /// Adds a batch \p X (N x in, rows are samples; any Eigen expression of Scalar): updates the
  /// mean, the variance, the components and the convergence test. N >= 1, and N >= q for the
  /// first batch; entries finite.
  template <typename Derived>
  void update(const Eigen::MatrixBase<Derived>& X) {
    static_assert(std::is_same_v<typename Derived::Scalar, Scalar>,
                  "lora::init::EvaCollector::update: the batch's Scalar must be the collector's");
    updateBatch(X.derived());  // a column-major batch is read in place, others are copied once
  }

  Index inFeatures() const noexcept { return m_in; }
  /// q, the number of components kept.
  Index componentCount() const noexcept { return m_q; }
  const EvaCollectorOptions& options() const noexcept { return m_options; }
  /// Rows seen so far (PEFT's n_samples_seen_).
  Index samplesSeen() const noexcept { return m_samples; }
  Index batches() const noexcept { return m_batches; }
  /// True once a batch has been added.
  bool hasComponents() const noexcept { return m_samples > 0; }

  /// The components V (q x in): orthonormal rows, the right singular vectors of the centered
  /// activations, in decreasing order of singular value (PEFT's `components_`).
  const Matrix& components() const {
    requireData("EvaCollector::components");
    return m_components;
  }
  /// The singular values S (q) of the centered activations (PEFT's `singular_values_`).
  const Vector& singularValues() const {
    requireData("EvaCollector::singularValues");
    return m_singular;
  }
  /// S_i² / (n − 1), the variance along each component (PEFT's `explained_variance_`); 0 when
  /// n = 1.
  Eigen::VectorXd explainedVariance() const {
    requireData("EvaCollector::explainedVariance");
    const Eigen::VectorXd s2 = m_singular.template cast<double>().cwiseAbs2();
    if (m_samples < 2) return Eigen::VectorXd::Zero(m_q);
    return s2 / static_cast<double>(m_samples - 1);
  }
  /// S_i² / Σ_j Σ_rows (x_j − μ_j)², the share of the total variance over all in features
  /// explained by each component (PEFT's `explained_variance_ratio_`); 0 when the total is 0.
  Eigen::VectorXd explainedVarianceRatio() const {
    requireData("EvaCollector::explainedVarianceRatio");
    const double total = m_m2.sum();
    if (!(total > 0.0)) return Eigen::VectorXd::Zero(m_q);
    return m_singular.template cast<double>().cwiseAbs2() / total;
  }
  /// The mean of every input feature over all rows seen (PEFT's `mean_`).
  const Eigen::VectorXd& mean() const {
    requireData("EvaCollector::mean");
    return m_mean;
  }
  /// The population variance of every input feature over all rows seen (PEFT's `var_`).
  Eigen::VectorXd variance() const {
    requireData("EvaCollector::variance");
    return m_m2 / static_cast<double>(m_samples);
  }
  /// The cosine similarity of each component with its value before the last update (q entries);
  /// empty before the second update.
  const Eigen::VectorXd& cosineSimilarity() const noexcept { return m_cosine; }
  /// Whether component \p i (0-based) has converged: cosineSimilarity()(i) >= τ (false before the
  /// second update).
  bool componentConverged(Index i) const {
    if (i < 0 || i >= m_q)
      detail::fail("EvaCollector::componentConverged", "expected 0 <= i < {}, got {}", m_q, i);
    return m_cosine.size() == m_q && m_cosine(i) >= m_options.tau;
  }
  /// Whether the first \p k components (0 <= k <= q) have all converged; PEFT's per-layer test with
  /// k the layer's current rank. True for k = 0.
  bool converged(Index k) const {
    if (k < 0 || k > m_q)
      detail::fail("EvaCollector::converged", "expected 0 <= k <= {}, got {}", m_q, k);
    for (Index i = 0; i < k; ++i)
      if (!(m_cosine.size() == m_q && m_cosine(i) >= m_options.tau)) return false;
    return true;
  }
  /// Whether all q components have converged.
  bool converged() const { return converged(m_q); }

 private:
  void requireData(const char* where) const {
    if (m_samples == 0) detail::fail(where, "expected at least one batch (call update), got none");
  }
  // The update, compiled once per Scalar (src/init/eva.cpp).
  void updateBatch(const Eigen::Ref<const Matrix>& X);

  Index m_in = 0;
  Index m_q = 0;
  EvaCollectorOptions m_options;
  Index m_samples = 0;
  Index m_batches = 0;
  Eigen::VectorXd m_mean;  ///< per-feature mean
  Eigen::VectorXd m_m2;    ///< per-feature sum of squared deviations from the mean
  Matrix m_components;     ///< q x in
  Vector m_singular;       ///< q
  Eigen::VectorXd m_cosine;
};

template <typename Scalar_>
void EvaCollector<Scalar_>::updateBatch(const Eigen::Ref<const Matrix>& X) {
  constexpr const char* where = "EvaCollector::update";
  if (X.cols() != m_in)
    detail::fail(where, "expected a batch with {} columns (in features), got {}x{}", m_in, X.rows(),
                 X.cols());
  if (X.rows() < 1)
    detail::fail(where, "expected a non-empty batch, got {}x{}", X.rows(), X.cols());
  const bool first = m_samples == 0;
  if (first && X.rows() < m_q)
    detail::fail(where, "expected a first batch of at least {} rows (one per component), got {}",
                 m_q, X.rows());
  const Eigen::Ref<const Matrix>& batch = X;
  if (!batch.allFinite()) detail::fail(where, "expected finite activations, got NaN or Inf");

  const Index n = batch.rows();
  const double nOld = static_cast<double>(m_samples);
  const double nBatch = static_cast<double>(n);
  const double nNew = nOld + nBatch;

  // Batch mean and unnormalized variance in double, then Chan et al.'s parallel combination.
  Eigen::VectorXd batchMean(m_in), batchM2(m_in);
  for (Index j = 0; j < m_in; ++j) {
    const auto col = batch.col(j).template cast<double>();
    batchMean(j) = col.sum() / nBatch;
    batchM2(j) = (col.array() - batchMean(j)).square().sum();
  }
  const Eigen::VectorXd delta = m_mean - batchMean;
  Eigen::VectorXd mean = (nOld * m_mean + nBatch * batchMean) / nNew;
  Eigen::VectorXd m2 = m_m2 + batchM2 + (nOld * nBatch / nNew) * delta.cwiseAbs2();

  // The stacked matrix M of Ross et al.'s incremental SVD.
  const Index head = first ? 0 : m_q;
  Matrix M(head + n + (first ? 0 : 1), m_in);
  if (!first) M.topRows(m_q).noalias() = m_singular.asDiagonal() * m_components;
  M.middleRows(head, n) =
      (batch.template cast<double>().rowwise() - batchMean.transpose()).template cast<Scalar>();
  if (!first)
    M.row(head + n) = (std::sqrt(nOld * nBatch / nNew) * delta).transpose().template cast<Scalar>();

  Matrix V;
  Vector S;
  const Index k = m_options.sketchSize == 0 ? 2 * m_q : m_options.sketchSize;
  const Index smaller = std::min(M.rows(), M.cols());
  const bool randomized =
      k < smaller &&
      (m_options.svd == EvaSvd::Randomized ||
       (m_options.svd == EvaSvd::Auto && 2 * k * (m_options.powerIterations + 1) < smaller));
  const bool ok = randomized ? detail::evaRandomizedRightSvd(M, m_q, k, m_options.powerIterations,
                                                             m_options.seed, V, S)
                             : detail::evaExactRightSvd(M, m_q, V, S);
  if (!ok || !V.allFinite() || !S.allFinite())
    detail::fail(where, "expected the SVD of the stacked {}x{} matrix to converge, got failure",
                 M.rows(), M.cols());
  detail::evaFlipRowSigns(V);

  Eigen::VectorXd cosine;
  if (!first) {
    cosine.resize(m_q);
    for (Index i = 0; i < m_q; ++i) {
      const auto now = V.row(i).template cast<double>();
      const auto before = m_components.row(i).template cast<double>();
      const double norms = now.norm() * before.norm();
      cosine(i) = norms > 0.0 ? now.dot(before) / norms : 0.0;
    }
  }

  // Commit (nothing below throws).
  m_mean.swap(mean);
  m_m2.swap(m2);
  m_components.swap(V);
  m_singular.swap(S);
  m_cosine.swap(cosine);
  m_samples += n;
  ++m_batches;
}

// Compiled once in liblorapp (src/init/eva.cpp). Define LORA_NO_EXTERN_TEMPLATES to compile them
// in the translation unit instead.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class EvaCollector<float>;
extern template class EvaCollector<double>;
#endif

/// \brief One layer's input to evaRankDistribution.
struct EvaLayerSpectrum {
  std::string name;       ///< the layer's name (unique, non-empty)
  Eigen::Index rank = 0;  ///< its configured rank r >= 1 (PEFT `r` / `rank_pattern`)
  Eigen::VectorXd explainedVarianceRatio;  ///< at least round(r·ρ) ratios, non-increasing
};

/// The spectrum of \p collector for evaRankDistribution.
template <typename Scalar>
EvaLayerSpectrum evaSpectrum(std::string name, Eigen::Index rank,
                             const EvaCollector<Scalar>& collector) {
  return {std::move(name), rank, collector.explainedVarianceRatio()};
}

/// \brief One layer's result of evaRankDistribution.
struct EvaLayerRank {
  std::string name;
  Eigen::Index rank = 0;                ///< the new rank, in [0, maxComponents]; 0: no adapter here
  Eigen::Index configuredRank = 0;      ///< r, as given
  Eigen::Index maxComponents = 0;       ///< round(r·ρ), the components that competed
  double explainedVarianceRatio = 0.0;  ///< sum of the ratios of the components kept
};

/// \brief The result of evaRankDistribution: the layers in input order.
struct EvaRankDistribution {
  std::vector<EvaLayerRank> layers;
  Eigen::Index budget = 0;  ///< Σ r over the layers; the ranks sum to it

  /// name -> new rank.
  std::map<std::string, Eigen::Index> ranks() const {
    std::map<std::string, Eigen::Index> out;
    for (const auto& layer : layers) out.emplace(layer.name, layer.rank);
    return out;
  }
  /// The new rank of layer \p name; throws for an unknown name.
  Eigen::Index rankOf(std::string_view name) const {
    for (const auto& layer : layers)
      if (layer.name == name) return layer.rank;
    detail::fail("EvaRankDistribution::rankOf", "expected the name of a layer, got '{}'", name);
  }
};

/// \brief EVA's rank redistribution: each layer offers its first round(r_l·ρ) explained variance
/// ratios, all offers are pooled and sorted in decreasing order, the first Σ r_l are kept, and a
/// layer's new rank is how many of its own were kept. A layer can get 0 (PEFT then removes its
/// adapter) and at most round(r_l·ρ); ρ = 1 gives every layer its r back.
///
/// Ties: sorted stably, so among equal ratios the layer listed first wins, then the lower
/// component index (PEFT's torch.argsort leaves the order of ties unspecified).
/// Source: PEFT `_get_eva_state_dict._get_rank_distribution`. Not done: PEFT's grouping of layers
/// that receive identical inputs (`equal_inputs_map`) and its cap for ρ > 1000.
/// Cost O(P log P) for the P = Σ round(r_l·ρ) pooled ratios.
///
/// \code
/// auto dist = lora::init::evaRankDistribution(
///     {evaSpectrum("q_proj", 16, q), evaSpectrum("v_proj", 16, v)}, 2.0);
/// lora::Layer<float> layer(W, {.rank = dist.rankOf("q_proj"), .alpha = 16},
///                          lora::init::Eva::fromCollector(q));
/// \endcode
inline EvaRankDistribution evaRankDistribution(const std::vector<EvaLayerSpectrum>& layers,
                                               double rho) {
  constexpr const char* where = "evaRankDistribution";
  if (layers.empty()) detail::fail(where, "expected at least one layer, got none");
  if (!(std::isfinite(rho) && rho >= 1.0))
    detail::fail(where, "expected a finite rho >= 1, got {}", rho);
  EvaRankDistribution out;
  out.layers.resize(layers.size());
  struct Offer {
    double ratio;
    std::size_t layer;
  };
  std::vector<Offer> offers;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const EvaLayerSpectrum& in = layers[l];
    if (in.name.empty()) detail::fail(where, "expected a non-empty name for layer {}, got ''", l);
    for (std::size_t other = 0; other < l; ++other)
      if (layers[other].name == in.name)
        detail::fail(where, "expected unique layer names, got '{}' twice", in.name);
    if (in.rank < 1)
      detail::fail(where, "expected a rank >= 1 for layer '{}', got {}", in.name, in.rank);
    const Eigen::Index q = detail::evaRoundHalfEven(static_cast<double>(in.rank) * rho);
    const Eigen::VectorXd& ratio = in.explainedVarianceRatio;
    if (ratio.size() < q)
      detail::fail(where,
                   "expected at least round(r·ρ) = {} explained variance ratios for layer '{}', "
                   "got {}",
                   q, in.name, ratio.size());
    for (Eigen::Index i = 0; i < q; ++i) {
      if (!(std::isfinite(ratio(i)) && ratio(i) >= 0.0))
        detail::fail(where, "expected finite non-negative ratios for layer '{}', got {} at {}",
                     in.name, ratio(i), i);
      if (i > 0 && ratio(i) > ratio(i - 1))
        detail::fail(where, "expected non-increasing ratios for layer '{}', got {} after {} at {}",
                     in.name, ratio(i), ratio(i - 1), i);
      offers.push_back({ratio(i), l});
    }
    out.layers[l] = {in.name, 0, in.rank, q, 0.0};
    out.budget += in.rank;
  }
  std::stable_sort(offers.begin(), offers.end(),
                   [](const Offer& a, const Offer& b) { return a.ratio > b.ratio; });
  for (Eigen::Index i = 0; i < out.budget; ++i) {  // offers.size() >= budget since round(r·ρ) >= r
    EvaLayerRank& layer = out.layers[offers[static_cast<std::size_t>(i)].layer];
    ++layer.rank;
    layer.explainedVarianceRatio += offers[static_cast<std::size_t>(i)].ratio;
  }
  return out;
}

}  // namespace lora::init
