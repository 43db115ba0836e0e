#pragma once
/// \file initialization_analyzer.hpp
/// \brief What each LoRA initializer starts from, measured over seeded trials: the norms and
/// spectrum of its initial delta, and its first gradients on a fake and on a real loss.
///
/// The article's `InitializationAnalyzer.analyze_initialization_impact`, made honest:
/// - ΔW = s·B·A (the article leaves out s); every quantity is computed from the factors A and B,
///   so no out x in matrix is formed: the singular values σ_i by lora::linalg::FactoredSVD,
///   ‖ΔW‖_F² = Σ σ_i², the entry sum s·(1ᵀB)(A1), hence std(ΔW) over all out·in entries.
/// - The condition number is σ_1/σ_k over the k = min(r, out, in) singular values a rank-r delta
///   can have (the article takes all out singular values of ΔW, so its value is Inf or noise for
///   every init); it is undefined (NaN) when ΔW is numerically rank-deficient (σ_k <=
///   max(out, in, r)·ε·σ_1, numpy's matrix_rank rule) or zero to rounding (σ_1 <=
///   max(out, in, r)·ε·s·‖B‖_F·‖A‖_F), B = 0 included; ε is the Scalar's epsilon.
/// - Gradients for two losses: the article's fake loss L = ‖ΔW‖_F², whose gradients
///   ∂L/∂A = 2s²·(BᵀB)·A and ∂L/∂B = 2s²·B·(AAᵀ) are exactly 0 whenever B = 0 (so it says
///   nothing about PEFT's default init), and a real regression step: the mean squared error of
///   the layer's output against Y = X·Tᵀ, with gradients from Layer::backward.
///
/// \code
/// lora::analysis::InitializationAnalyzerOptions options{
///     .outFeatures = 768, .inFeatures = 768, .rank = 16, .alpha = 16, .trials = 10};
/// lora::analysis::InitializationAnalyzer<double> analyzer(options);
/// analyzer.add(lora::init::PeftDefault{}).add(lora::init::XavierLora{});
/// analyzer.setBaseWeight(W);                  // optional; copied, one copy per trial
/// lora::analysis::InitializationReport report = analyzer.compute();
/// report.print();                             // markdown tables; report.toCsv(), report.toJson()
/// \endcode
///
/// InitializationReport::toJson() returns an nlohmann::json, declared here through
/// <nlohmann/json_fwd.hpp>: include <nlohmann/json.hpp> to use it. It is compiled in liblorapp
/// (src/analysis/initialization_report.cpp).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include "lora/detail/eigen.hpp"

#include "lora/analysis/markdown_table.hpp"
#include "lora/base_weight.hpp"
#include "lora/linalg/detail/orthogonal.hpp"
#include "lora/error.hpp"
#include "lora/init/initializer.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/random.hpp"
#include "lora/scaling.hpp"

namespace lora::analysis {

/// \brief Mean, standard deviation, minimum and maximum of one quantity over the trials in which
/// it was defined (NaN values are skipped; `count` says how many were kept).
///
/// The std is the population one (ddof = 0, as numpy's np.std that the article uses). With
/// count = 0 every field is NaN.
struct Statistic {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double stddev = std::numeric_limits<double>::quiet_NaN();
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  Eigen::Index count = 0;  ///< values that were defined (not NaN)

  bool defined() const noexcept { return count > 0; }

  /// The statistic of the non-NaN entries of \p values.
  static Statistic of(const std::vector<double>& values);
};

/// \brief One trial of one initializer: every quantity the analyzer measures, in double.
///
/// ΔW = s·B·A with the layer's scaling s; X, Y, T: the regression batch, target and target
/// weight (see InitializationAnalyzerOptions); W: the base weight before the init, W' after it.
struct InitMeasurement {
  std::uint64_t seed = 0;      ///< the layer seed of this trial
  double deltaNorm = 0;        ///< ‖ΔW‖_F
  double deltaStd = 0;         ///< std of ΔW's out·in entries (ddof = 1, as torch.std)
  double normA = 0;            ///< ‖A‖_F
  double normB = 0;            ///< ‖B‖_F
  double spectralNorm = 0;     ///< σ_1(ΔW)
  double conditionNumber = 0;  ///< σ_1/σ_k, k = min(r, out, in); NaN when rank-deficient or 0
  double fakeGradA = 0;        ///< ‖∂L/∂A‖_F for the article's L = ‖ΔW‖_F²
  double fakeGradB = 0;        ///< ‖∂L/∂B‖_F for the same L
  double regressionLoss = 0;   ///< mean((f(X) − Y)²) at step 0
  double regressionGradA = 0;  ///< ‖∂MSE/∂A‖_F from Layer::backward
  double regressionGradB = 0;  ///< ‖∂MSE/∂B‖_F from Layer::backward
  double baseChange = 0;       ///< ‖W' − W‖_F; NaN without a base weight
  double outputChangeMax = 0;  ///< max |f(X) − X·Wᵀ| over the batch
  double outputChangeRel = 0;  ///< outputChangeMax / max |X·Wᵀ|; NaN when X·Wᵀ = 0
};

/// \brief The statistics of one initializer over the trials (see InitMeasurement for each
/// quantity). Trials whose initializer threw lora::Error are counted in failedTrials and left
/// out; when all failed, every statistic is undefined and ok() is false.
struct InitializationResult {
  std::string name;               ///< the name it was added under
  std::string initializerName;    ///< the policy's own name (AnyInitializer::name())
  bool dataDependent = false;     ///< AnyInitializer::dataDependent()
  Eigen::Index trials = 0;        ///< trials run
  Eigen::Index failedTrials = 0;  ///< trials whose initializer threw lora::Error
  std::string error;              ///< the first such error's message; empty when none failed

  Statistic deltaNorm, deltaStd, normA, normB, spectralNorm, conditionNumber;
  Statistic fakeGradA, fakeGradB;
  Statistic regressionLoss, regressionGradA, regressionGradB;
  Statistic baseChange, outputChangeMax, outputChangeRel;

  std::vector<InitMeasurement> measurements;  ///< the trials that ran, in order

  /// True when no trial failed.
  bool ok() const noexcept { return failedTrials == 0; }
  /// Trials that ran (trials − failedTrials).
  Eigen::Index succeededTrials() const noexcept { return trials - failedTrials; }
};

/// \brief One measured quantity: its key (CSV and JSON), its table label, what it is, and where
/// it lives in InitMeasurement and InitializationResult.
struct MetricInfo {
  std::string_view key;
  std::string_view label;
  std::string_view description;
  double InitMeasurement::*value;
  Statistic InitializationResult::*statistic;
};

/// Every quantity the analyzer reports, in table order; CSV and JSON columns follow it.
const std::array<MetricInfo, 14>& initializationMetrics();

/// \brief How InitializationAnalyzer runs.
///
/// Trial t (0 <= t < trials) builds every layer with LayerOptions::seed = seed + t, so all
/// initializers see the same seeds. The regression problem is drawn once from dataSeed and is
/// the same for every trial and initializer: X (batchSize x in) ~ N(0, 1), the target weight
/// T = W + D (D = U·diag(targetScale)·Vᵀ with random orthonormal U, V of targetRank columns; W =
/// the base weight, or 0 without one) unless a target is set, and Y = X·Tᵀ.
struct InitializationAnalyzerOptions {
  Eigen::Index outFeatures = 768;  ///< rows of W and B, >= 1
  Eigen::Index inFeatures = 768;   ///< columns of W and A, >= 1
  Eigen::Index rank = 16;          ///< r >= 1
  double alpha = 16.0;             ///< lora_alpha, positive and finite
  ScalingMode scaling = ScalingMode::Standard;
  Eigen::Index trials = 10;     ///< seeded trials per initializer, >= 1
  std::uint64_t seed = 0;       ///< trial t uses layer seed seed + t
  Eigen::Index batchSize = 64;  ///< N, rows of the regression batch X, >= 1
  Eigen::Index targetRank = 0;  ///< rank of the planted D, <= min(out, in); 0: min(r, out, in)
  double targetScale = 1.0;     ///< each planted singular value, finite and >= 0
  std::uint64_t dataSeed = 20260101;  ///< seeds X and D
};

/// \brief What InitializationAnalyzer::compute() found: its configuration and one result per
/// initializer, with CSV, JSON and markdown-table output.
struct InitializationReport {
  InitializationAnalyzerOptions options;
  std::string scalar;           ///< "float" or "double"
  double scaling = 0.0;         ///< the layers' s
  Eigen::Index targetRank = 0;  ///< the planted rank used; 0 when a target was given
  bool hasBaseWeight = false;   ///< layers were built on (copies of) a base weight
  bool hasTarget = false;       ///< T was given instead of planted
  double baseLoss = 0.0;        ///< mean((X·Wᵀ − Y)²): the base model's loss
  std::vector<InitializationResult> results;

  /// The result added under \p name; throws when there is none.
  const InitializationResult& at(std::string_view name) const;

  /// One header line and one row per initializer (RFC 4180 quoting): name, initializer,
  /// data_dependent, trials, failed_trials, error, then <key>_mean, _std, _min, _max, _count for
  /// every metric in initializationMetrics() order. Numbers round-trip (17 significant digits);
  /// an undefined value is written "nan".
  std::string toCsv() const;

  /// The report as JSON: "config", "base_loss", "metrics" (key and description) and "results",
  /// each with its statistics by metric key and its per-trial "measurements". Undefined values
  /// are null; a result's "error" is null when no trial failed.
  nlohmann::json toJson() const;

  /// Two markdown tables (mean ± std over the trials): the initial state, then the gradients and
  /// the effect on the model; a condition number shows in how many trials it was defined. Failed
  /// initializers are listed below with their error.
  std::string format() const;

  /// Writes format() to \p file.
  void print(std::FILE* file = stdout) const;

 private:
  static std::string csvField(const std::string& text);
  static std::string number4(double v);
  static std::string cell(const Statistic& st);
};

/// \brief An initializer and the name the report shows it under.
template <typename Scalar>
struct NamedInitializer {
  std::string name;
  init::AnyInitializer<Scalar> initializer;
};

/// \brief The regression problem every trial is scored on: batch X (N x in), the base weight the
/// layers start from (zero when the analyzer has none), the target weight T and Y = X·Tᵀ.
template <typename Scalar>
struct RegressionProblem {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix X;       ///< N x in
  Matrix weight;  ///< out x in: the base weight, or zero
  Matrix target;  ///< out x in: T
  Matrix Y;       ///< N x out: X·Tᵀ
};

/// \brief Runs every added initializer over seeded trials and measures what it starts from (see
/// the file comment and InitMeasurement).
///
/// Each trial builds a real lora::Layer: `Layer(Wcopy, options, init)` on a fresh copy of the
/// base weight when one is set (the init may change it: SubtractDelta, PiSSA, ...), else
/// `Layer(out, in, options, init)` bound to a zero base. An initializer that throws lora::Error
/// (for example one that needs the base weight, or asks to subtract s·B·A from it, when none is
/// set) does not stop the analysis: its trial is counted as failed and its result carries the
/// message (InitializationResult::ok()); the other initializers run as usual.
/// Bad configuration throws lora::Error at once. float and double.
///
/// Cost per trial: the init, O((out + in)·r²) for the factor statistics and the factored SVD, a
/// forward and a backward on N rows, and a copy of W when it is set. No out x in delta is formed.
template <typename Scalar_>
class InitializationAnalyzer {
 public:
  using Scalar = Scalar_;
  using RealScalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "lora::analysis::InitializationAnalyzer: Scalar must be float or double");

  /// Checks \p options (see InitializationAnalyzerOptions for the valid ranges).
  explicit InitializationAnalyzer(const InitializationAnalyzerOptions& options = {},
                                  std::vector<NamedInitializer<Scalar>> initializers = {});

  /// Adds \p initializer under \p name (non-empty, not used yet).
  InitializationAnalyzer& add(std::string name, init::AnyInitializer<Scalar> initializer);
  /// Adds \p initializer under its own name.
  InitializationAnalyzer& add(init::AnyInitializer<Scalar> initializer);

  /// Sets the base weight W (out x in, finite); it is copied, and each trial gets its own copy.
  template <typename Derived>
  InitializationAnalyzer& setBaseWeight(const Eigen::MatrixBase<Derived>& W) {
    m_weight = checkedWeight("InitializationAnalyzer::setBaseWeight", W);
    return *this;
  }
  /// Sets the regression target weight T (out x in, finite) instead of the planted one.
  template <typename Derived>
  InitializationAnalyzer& setTarget(const Eigen::MatrixBase<Derived>& T) {
    m_target = checkedWeight("InitializationAnalyzer::setTarget", T);
    return *this;
  }
  void clearBaseWeight() noexcept { m_weight.reset(); }
  void clearTarget() noexcept { m_target.reset(); }
  bool hasBaseWeight() const noexcept { return m_weight.has_value(); }
  bool hasTarget() const noexcept { return m_target.has_value(); }

  const InitializationAnalyzerOptions& options() const noexcept { return m_options; }
  const std::vector<NamedInitializer<Scalar>>& initializers() const noexcept {
    return m_initializers;
  }

  /// The planted rank compute() uses: options().targetRank, or min(r, out, in) when it is 0.
  Index targetRank() const noexcept {
    if (m_options.targetRank > 0) return m_options.targetRank;
    return std::min({m_options.rank, m_options.outFeatures, m_options.inFeatures});
  }

  /// The regression problem compute() scores every trial on (the same bits every call).
  RegressionProblem<Scalar> regressionProblem() const;

  /// Runs every initializer for options().trials trials; needs at least one initializer.
  InitializationReport compute() const;

 private:
  static void check(const InitializationAnalyzerOptions& o);

  template <typename Derived>
  Matrix checkedWeight(const char* where, const Eigen::MatrixBase<Derived>& W) const {
    if (W.rows() != m_options.outFeatures || W.cols() != m_options.inFeatures)
      detail::fail(where, "expected a {}x{} (out x in) matrix, got {}x{}", m_options.outFeatures,
                   m_options.inFeatures, W.rows(), W.cols());
    Matrix copy = W.template cast<Scalar>();
    if (!copy.allFinite()) detail::fail(where, "expected finite entries, got NaN or Inf");
    return copy;
  }

  template <typename Derived>
  static double meanSquare(const Eigen::MatrixBase<Derived>& E) {
    const MatrixD e = E.template cast<double>();
    return e.squaredNorm() / static_cast<double>(e.size());
  }

  /// One trial; nullopt (and \p error set) when the initializer threw lora::Error.
  std::optional<InitMeasurement> measure(const init::AnyInitializer<Scalar>& initializer,
                                         std::uint64_t seed, const RegressionProblem<Scalar>& p,
                                         const Matrix& baseOut, std::string& error) const;

  /// The factor-only statistics of s·B·A and the fake-loss gradients, in double.
  void measureFactors(const Layer<Scalar>& layer, InitMeasurement& m) const;

  InitializationAnalyzerOptions m_options;
  std::vector<NamedInitializer<Scalar>> m_initializers;
  std::optional<Matrix> m_weight;  ///< W (out x in) when set
  std::optional<Matrix> m_target;  ///< T (out x in) when set
};

// The member definitions, out of the class body: for InitializationAnalyzer<float> and <double>
// they are compiled once in liblorapp (src/analysis/initialization_analyzer.cpp, see below).

template <typename Scalar_>
InitializationAnalyzer<Scalar_>::InitializationAnalyzer(
    const InitializationAnalyzerOptions& options,
    std::vector<NamedInitializer<Scalar>> initializers)
    : m_options(options) {
  check(options);
  for (auto& named : initializers) add(std::move(named.name), std::move(named.initializer));
}

template <typename Scalar_>
InitializationAnalyzer<Scalar_>& InitializationAnalyzer<Scalar_>::add(
    std::string name, init::AnyInitializer<Scalar> initializer) {
  constexpr const char* where = "InitializationAnalyzer::add";
  if (name.empty()) detail::fail(where, "expected a non-empty name, got an empty one");
  for (const auto& named : m_initializers)
    if (named.name == name) detail::fail(where, "expected a new name, got '{}' twice", name);
  m_initializers.push_back({std::move(name), std::move(initializer)});
  return *this;
}

template <typename Scalar_>
InitializationAnalyzer<Scalar_>& InitializationAnalyzer<Scalar_>::add(
    init::AnyInitializer<Scalar> initializer) {
  std::string name = initializer.name();
  return add(std::move(name), std::move(initializer));
}

template <typename Scalar_>
auto InitializationAnalyzer<Scalar_>::regressionProblem() const -> RegressionProblem<Scalar> {
  const Index out = m_options.outFeatures, in = m_options.inFeatures;
  RegressionProblem<Scalar> p;
  Rng rng(m_options.dataSeed);
  p.X.resize(m_options.batchSize, in);
  fillNormal(p.X, rng, 0.0, 1.0);
  p.weight = m_weight ? *m_weight : Matrix::Zero(out, in);
  if (m_target) {
    p.target = *m_target;
  } else {
    const Index k = targetRank();
    const Matrix U = detail::orthogonalMatrix<Scalar>(out, k, 1.0, rng);
    const Matrix V = detail::orthogonalMatrix<Scalar>(in, k, 1.0, rng);
    p.target = p.weight;
    p.target.noalias() += (static_cast<Scalar>(m_options.targetScale) * U) * V.transpose();
  }
  p.Y.noalias() = p.X * p.target.transpose();
  return p;
}

template <typename Scalar_>
InitializationReport InitializationAnalyzer<Scalar_>::compute() const {
  if (m_initializers.empty())
    detail::fail("InitializationAnalyzer::compute",
                 "expected at least one initializer (call add), got none");
  const RegressionProblem<Scalar> problem = regressionProblem();
  Matrix baseOut;
  baseOut.noalias() = problem.X * problem.weight.transpose();

  InitializationReport report;
  report.options = m_options;
  report.scalar = std::is_same_v<Scalar, float> ? "float" : "double";
  report.scaling = scalingFor(m_options.alpha, m_options.rank, m_options.scaling);
  report.targetRank = m_target ? 0 : targetRank();
  report.hasBaseWeight = m_weight.has_value();
  report.hasTarget = m_target.has_value();
  report.baseLoss = meanSquare(baseOut - problem.Y);

  for (const auto& named : m_initializers) {
    InitializationResult result;
    result.name = named.name;
    result.initializerName = named.initializer.name();
    result.dataDependent = named.initializer.dataDependent();
    result.trials = m_options.trials;
    for (Index t = 0; t < m_options.trials; ++t) {
      const std::uint64_t seed = m_options.seed + static_cast<std::uint64_t>(t);
      std::string error;
      std::optional<InitMeasurement> m = measure(named.initializer, seed, problem, baseOut, error);
      if (m) {
        result.measurements.push_back(*m);
      } else {
        ++result.failedTrials;
        if (result.error.empty()) result.error = std::move(error);
      }
    }
    for (const auto& metric : initializationMetrics()) {
      std::vector<double> values;
      values.reserve(result.measurements.size());
      for (const auto& m : result.measurements) values.push_back(m.*(metric.value));
      result.*(metric.statistic) = Statistic::of(values);
    }
    report.results.push_back(std::move(result));
  }
  return report;
}

template <typename Scalar_>
void InitializationAnalyzer<Scalar_>::check(const InitializationAnalyzerOptions& o) {
  constexpr const char* where = "InitializationAnalyzer::InitializationAnalyzer";
  if (o.outFeatures < 1 || o.inFeatures < 1)
    detail::fail(where, "expected out and in features >= 1, got {}x{}", o.outFeatures,
                 o.inFeatures);
  if (o.rank < 1) detail::fail(where, "expected a rank >= 1, got {}", o.rank);
  if (!(std::isfinite(o.alpha) && o.alpha > 0.0))
    detail::fail(where, "expected alpha to be a positive finite number, got {}", o.alpha);
  if (o.trials < 1) detail::fail(where, "expected trials >= 1, got {}", o.trials);
  if (o.batchSize < 1) detail::fail(where, "expected a batch size >= 1, got {}", o.batchSize);
  const Index maxRank = std::min(o.outFeatures, o.inFeatures);
  if (o.targetRank < 0 || o.targetRank > maxRank)
    detail::fail(where, "expected 0 <= targetRank <= min(out, in) = {}, got {}", maxRank,
                 o.targetRank);
  if (!(std::isfinite(o.targetScale) && o.targetScale >= 0.0))
    detail::fail(where, "expected a finite targetScale >= 0, got {}", o.targetScale);
}

template <typename Scalar_>
auto InitializationAnalyzer<Scalar_>::measure(const init::AnyInitializer<Scalar>& initializer,
                                              std::uint64_t seed,
                                              const RegressionProblem<Scalar>& p,
                                              const Matrix& baseOut, std::string& error) const
    -> std::optional<InitMeasurement> {
  const LayerOptions layerOptions{
      .rank = m_options.rank, .alpha = m_options.alpha, .scaling = m_options.scaling, .seed = seed};
  Matrix W;  // this trial's copy of the base weight; the layer is bound to it
  std::optional<Layer<Scalar>> layer;
  try {
    if (m_weight) {
      W = *m_weight;
      layer.emplace(BaseWeight<Scalar>(W), layerOptions, initializer);
    } else {
      layer.emplace(m_options.outFeatures, m_options.inFeatures, layerOptions, initializer);
    }
  } catch (const Error& e) {
    error = e.what();
    return std::nullopt;
  }
  if (!m_weight) layer->bindBase(BaseWeight<Scalar>(p.weight));  // read-only zero base

  InitMeasurement m;
  m.seed = seed;
  measureFactors(*layer, m);

  // The regression step: MSE of the layer's output, gradients from the layer's backward.
  const Index N = p.X.rows(), out = m_options.outFeatures;
  const Matrix F = layer->forward(p.X);
  const Matrix E = F - p.Y;
  m.regressionLoss = meanSquare(E);
  const Matrix dY = static_cast<Scalar>(2.0 / static_cast<double>(N * out)) * E;
  layer->backward(p.X, dY, GradMode::Overwrite);
  m.regressionGradA = layer->gradA().template cast<double>().norm();
  m.regressionGradB = layer->gradB().template cast<double>().norm();

  // What the init did to the model.
  m.baseChange = m_weight ? (W.template cast<double>() - m_weight->template cast<double>()).norm()
                          : std::numeric_limits<double>::quiet_NaN();
  const double baseMax = baseOut.template cast<double>().cwiseAbs().maxCoeff();
  m.outputChangeMax = (F - baseOut).template cast<double>().cwiseAbs().maxCoeff();
  m.outputChangeRel =
      baseMax > 0.0 ? m.outputChangeMax / baseMax : std::numeric_limits<double>::quiet_NaN();
  return m;
}

template <typename Scalar_>
void InitializationAnalyzer<Scalar_>::measureFactors(const Layer<Scalar>& layer,
                                                     InitMeasurement& m) const {
  const double s = layer.scaling();
  const MatrixD A = layer.A().template cast<double>();
  const MatrixD B = layer.B().template cast<double>();
  const MatrixD gramA = A * A.transpose();  // r x r
  const MatrixD gramB = B.transpose() * B;  // r x r
  m.normA = A.norm();
  m.normB = B.norm();

  // ‖sBA‖_F² = Σ σ_i²: from the factored SVD (QR-based, accurate to rounding of the factors even
  // when B·A cancels to ~0); the Gram form s²·Σ (BᵀB) ∘ (AAᵀ) only if the SVD failed (it loses
  // everything below sqrt(ε)·s·‖B‖‖A‖ to cancellation).
  const linalg::FactoredSVD<double> svd(B, A, s, 0);
  const bool haveSpectrum = svd.info() == Eigen::Success && svd.size() > 0;
  const double squares = haveSpectrum ? svd.singularValues().squaredNorm()
                                      : std::max(0.0, s * s * gramA.cwiseProduct(gramB).sum());
  const double sum = s * (B.colwise().sum() * A.rowwise().sum()).value();  // 1ᵀ(sBA)1
  const double n =
      static_cast<double>(m_options.outFeatures) * static_cast<double>(m_options.inFeatures);
  const double mean = sum / n;
  m.deltaNorm = std::sqrt(squares);
  m.deltaStd = n > 1.0 ? std::sqrt(std::max(0.0, (squares - n * mean * mean) / (n - 1.0)))
                       : std::numeric_limits<double>::quiet_NaN();

  m.spectralNorm = m.conditionNumber = std::numeric_limits<double>::quiet_NaN();
  if (haveSpectrum) {
    const auto& sigma = svd.singularValues();
    const double first = sigma(0), last = sigma(sigma.size() - 1);
    m.spectralNorm = first;
    // numpy's matrix_rank tolerance, with the precision the factors were stored in; and a delta
    // at the rounding level of its factors (B·A = 0 up to rounding, as PEFT's orthogonal init
    // makes it) has no meaningful spectrum either.
    const double eps = static_cast<double>(std::numeric_limits<Scalar>::epsilon());
    const double size = static_cast<double>(
        std::max({m_options.outFeatures, m_options.inFeatures, m_options.rank}));
    const double rankTol = size * eps * first;
    const double zeroTol = size * eps * std::abs(s) * m.normA * m.normB;
    if (first > zeroTol && last > rankTol) m.conditionNumber = first / last;
  }
  // L = ‖sBA‖_F²: ∂L/∂A = 2s² (BᵀB) A, ∂L/∂B = 2s² B (AAᵀ)
  m.fakeGradA = 2.0 * s * s * (gramB * A).norm();
  m.fakeGradB = 2.0 * s * s * (B * gramA).norm();
}

// Compiled once in liblorapp (src/analysis/initialization_analyzer.cpp). Define
// LORA_NO_EXTERN_TEMPLATES to compile them in the translation unit instead, with its own flags.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class InitializationAnalyzer<float>;
extern template class InitializationAnalyzer<double>;
#endif

}  // namespace lora::analysis
