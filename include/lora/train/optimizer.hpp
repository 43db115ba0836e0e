#pragma once
/// \file optimizer.hpp
/// \brief train::Optimizer: an update rule (train::Sgd, train::AdamW) over the A and B factors of
/// LoRA layers, with PyTorch's global-norm gradient clipping, LoRA+ learning rates for B, state
/// that follows the layers through a resize, and steps that are all-or-nothing.
///
/// One step:
/// 1. refuses a non-finite loss (step(loss)) and layers changed behind its back (below);
/// 2. computes the global L2 norm of all gradients, as if concatenated; with maxGradNorm > 0 every
///    gradient is multiplied by min(1, maxGradNorm / (norm + 1e-6)) — exactly
///    `torch.nn.utils.clip_grad_norm_` (which this optimizer applies to its own copies: the
///    layers' gradients are left as they are);
/// 3. updates A at the rule's learning rate γ and B at λ·γ (LoRA+: Hayou, Ghosh & Yu, "LoRA+:
///    Efficient Low Rank Adaptation of Large Models", 2024, who recommend λ = 2^4; PEFT's
///    `loraplus_lr_ratio`, which also applies the weight decay with B's learning rate);
/// 4. computes every new factor and every new moment first, and commits only if all are finite.
///    Otherwise it throws lora::Error and leaves every layer and all its state as they were.
///
/// **Resizes.** Optimizer::resize / keepDirections resize the layer and carry the state with the
/// report's change of basis (lora/train/state_carry.hpp); carryState(layer, report) does the same
/// after a resize the caller made. The optimizer remembers each layer's rank and a fingerprint
/// of its factors after its own last change; a layer whose rank or factors changed otherwise
/// (a resize, keepDirections, setFactors or updateFactors behind its back) makes the next step
/// throw, instead of applying moments that belong to other coordinates. resetState(layer)
/// accepts the layer as it is with fresh state.
///
/// **DoRA.** A DoRA layer's magnitude m is trained too, at A's learning rate, from
/// Layer::gradMagnitude(), and counts in the global gradient norm (as PEFT's
/// `lora_magnitude_vector` is one more parameter of the model). Its moments (out entries, one
/// step count) are not touched by a resize: m keeps its coordinates.
///
/// The optimizer holds pointers: the layers must outlive it and must not move (keep them in a
/// container that does not reallocate, e.g. std::deque or a reserved std::vector).
///
/// \code
/// using namespace lora::train;
/// Optimizer<float, AdamW> opt(AdamW{.lr = 2e-4}, {.maxGradNorm = 1.0, .loraPlusRatio = 16});
/// opt.add(q, "q_proj");
/// opt.add(v, "v_proj");
/// for (...) {
///   // forward, loss, backward(..., GradMode::Overwrite) on every layer
///   opt.step(loss);
/// }
/// opt.resize(q, 4);   // shrink mid-training: Adam's moments move into the new basis
/// \endcode

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/layer.hpp"
#include "lora/resize.hpp"
#include "lora/train/adamw.hpp"
#include "lora/train/sgd.hpp"
#include "lora/train/state_carry.hpp"
#include "lora/train/update_rule.hpp"

namespace lora::train {

/// Options that do not depend on the update rule.
struct OptimizerOptions {
  /// > 0: clip the global gradient norm to this (torch.nn.utils.clip_grad_norm_, L2); 0: off.
  double maxGradNorm = 0.0;
  /// LoRA+ λ: B's learning rate is λ times A's (1: plain LoRA; the LoRA+ paper suggests 16).
  double loraPlusRatio = 1.0;
  /// How second moments cross a change of basis (see state_carry.hpp).
  SecondMomentCarry secondMoments = SecondMomentCarry::Bound;
};

/// What one step did.
struct StepReport {
  std::int64_t step = 0;       ///< steps taken so far, this one included
  double gradNorm = 0;         ///< global L2 norm of all gradients, before clipping
  double clipCoefficient = 1;  ///< factor the gradients were multiplied by (1: not clipped)
  double learningRateA = 0;    ///< γ
  double learningRateB = 0;    ///< λ·γ
};

/// A copy of one layer's optimizer state, in the layer's own layout.
template <typename Scalar>
struct LayerState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix firstA, secondA;                  ///< r x in (empty when the rule keeps none)
  Matrix firstB, secondB;                  ///< out x r (empty when the rule keeps none)
  StepCounts steps;                        ///< per rank direction
  Matrix firstMagnitude, secondMagnitude;  ///< 1 x out for a DoRA layer (else empty)
  std::int64_t magnitudeSteps = 0;         ///< steps the magnitude took
};

/// \brief Trains the A and B factors of registered LoRA layers with update rule \p Rule
/// (see the file comment).
template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
class Optimizer {
 public:
  using LayerType = Layer<Scalar>;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Index = Eigen::Index;

  explicit Optimizer(Rule rule = {}, const OptimizerOptions& options = {})
      : m_rule(std::move(rule)), m_options(options) {
    m_rule.validate();
    checkOptions(options);
  }

  /// Registers \p layer (its A and B become trainable parameters, with fresh state). \p name
  /// appears in errors; by default "layer <index>". A layer can be registered once.
  void add(LayerType& layer, std::string name = {});
  /// Forgets \p layer and its state.
  void remove(const LayerType& layer);
  bool contains(const LayerType& layer) const { return find(layer) != nullptr; }
  std::size_t size() const noexcept { return m_entries.size(); }
  const std::string& nameOf(const LayerType& layer) const {
    return entry("Optimizer::nameOf", layer).name;
  }

  /// One step over every registered layer (see the file comment). Throws lora::Error, changing
  /// nothing, on: no layers, a merged layer, a layer changed behind the optimizer's back, a
  /// non-finite gradient norm, or an update that would make a factor or a moment NaN or Inf.
  StepReport step() { return stepImpl(); }
  /// As step(), and first refuses a NaN or infinite \p loss.
  StepReport step(double loss);

  /// Steps taken (successful ones).
  std::int64_t steps() const noexcept { return m_steps; }
  double learningRate() const noexcept { return m_rule.learningRate(); }
  /// Sets γ (a schedule calls this between steps); B's rate follows as λ·γ.
  void setLearningRate(double lr) {
    Rule next = m_rule;
    next.setLearningRate(lr);
    next.validate();
    m_rule = std::move(next);
  }
  const Rule& rule() const noexcept { return m_rule; }
  const OptimizerOptions& options() const noexcept { return m_options; }

  /// Resizes \p layer (Layer::resize) and carries its state into the new basis.
  ResizeReport<Scalar> resize(LayerType& layer, Index newRank, const ResizeOptions& options = {});
  /// Keeps the chosen singular triplets (Layer::keepDirections) and carries the state.
  ResizeReport<Scalar> keepDirections(LayerType& layer, const std::vector<Index>& keep,
                                      const ResizeOptions& options = {});
  /// Carries \p layer's state through \p report, a resize the caller already made (the report's
  /// old rank must be the state's rank, its new rank the layer's rank now).
  void carryState(LayerType& layer, const ResizeReport<Scalar>& report);
  /// Drops \p layer's state (moments zero, step counts 0) and accepts its factors as they are.
  void resetState(LayerType& layer) { fresh(entry("Optimizer::resetState", layer)); }

  /// A copy of \p layer's state, in the layer's layout.
  LayerState<Scalar> state(const LayerType& layer) const;

 private:
  struct Entry {
    LayerType* layer = nullptr;
    std::string name;
    Moments<Scalar> a;  ///< A's state, r x in
    Moments<Scalar> b;  ///< Bᵀ's state, r x out
    Moments<Scalar> m;  ///< the DoRA magnitude's state, 1 x out (empty without DoRA)
    StepCounts mSteps;  ///< {steps of the magnitude} (empty without DoRA)
    StepCounts steps;
    Index rank = 0;
    std::uint64_t fingerprint = 0;
  };

  static void checkOptions(const OptimizerOptions& o);

  /// A 64-bit FNV-1a hash of the shapes and bit patterns of A and B.
  static std::uint64_t fingerprint(const LayerType& layer);

  void fresh(Entry& e) const;

  const Entry* find(const LayerType& layer) const;
  Entry& entry(const char* where, const LayerType& layer) {
    return const_cast<Entry&>(std::as_const(*this).entry(where, layer));
  }
  const Entry& entry(const char* where, const LayerType& layer) const;

  void checkInSync(const char* where, const Entry& e) const;

  void apply(Entry& e, const ResizeReport<Scalar>& report);

  static bool finite(const Moments<Scalar>& m);

  StepReport stepImpl();

  Rule m_rule;
  OptimizerOptions m_options;
  std::vector<Entry> m_entries;
  std::int64_t m_steps = 0;
};

// The member definitions, out of the class body: for Optimizer<float | double, Sgd | AdamW> they
// are compiled once in liblorapp (src/train/optimizer.cpp, see the end of this file); any other
// Scalar or update rule instantiates them here.

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::add(LayerType& layer, std::string name) {
  constexpr const char* where = "Optimizer::add";
  if (find(layer) != nullptr)
    detail::fail(where, "expected a layer not yet registered, got '{}' a second time",
                 find(layer)->name);
  if (layer.isMerged())
    detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
  Entry e;
  e.layer = &layer;
  e.name = name.empty() ? "layer " + std::to_string(m_entries.size()) : std::move(name);
  fresh(e);
  m_entries.push_back(std::move(e));
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::remove(const LayerType& layer) {
  const auto it = std::find_if(m_entries.begin(), m_entries.end(),
                               [&](const Entry& e) { return e.layer == &layer; });
  if (it == m_entries.end())
    detail::fail("Optimizer::remove", "expected a registered layer, got one never added");
  m_entries.erase(it);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> StepReport Optimizer<Scalar, Rule>::step(double loss) {
  if (!std::isfinite(loss))
    detail::fail("Optimizer::step",
                 "expected a finite loss, got {} (step refused: parameters and state unchanged)",
                 loss);
  return stepImpl();
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> ResizeReport<Scalar> Optimizer<Scalar, Rule>::resize(
    LayerType& layer, Index newRank, const ResizeOptions& options) {
  Entry& e = entry("Optimizer::resize", layer);
  checkInSync("Optimizer::resize", e);
  ResizeReport<Scalar> report = layer.resize(newRank, options);  // throws: nothing changed
  apply(e, report);
  return report;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> ResizeReport<Scalar> Optimizer<Scalar, Rule>::keepDirections(
    LayerType& layer, const std::vector<Index>& keep, const ResizeOptions& options) {
  Entry& e = entry("Optimizer::keepDirections", layer);
  checkInSync("Optimizer::keepDirections", e);
  ResizeReport<Scalar> report = layer.keepDirections(keep, options);
  apply(e, report);
  return report;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::carryState(LayerType& layer, const ResizeReport<Scalar>& report) {
  constexpr const char* where = "Optimizer::carryState";
  Entry& e = entry(where, layer);
  if (report.oldRank != e.rank || report.newRank != layer.rank())
    detail::fail(where,
                 "expected a report from rank {} (the state of '{}') to rank {} (the layer now), "
                 "got one from {} to {}",
                 e.rank, e.name, layer.rank(), report.oldRank, report.newRank);
  (void)GradientMaps<Scalar>::from(report);  // validates the transforms before any change
  apply(e, report);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> LayerState<Scalar> Optimizer<Scalar, Rule>::state(
    const LayerType& layer)
const {
  const Entry& e = entry("Optimizer::state", layer);
  LayerState<Scalar> s;
  s.firstA = e.a.first;
  s.secondA = e.a.second;
  s.firstB = e.b.first.transpose();
  s.secondB = e.b.second.transpose();
  s.steps = e.steps;
  s.firstMagnitude = e.m.first;
  s.secondMagnitude = e.m.second;
  s.magnitudeSteps = e.mSteps.empty() ? 0 : e.mSteps.front();
  return s;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::checkOptions(const OptimizerOptions& o) {
  constexpr const char* where = "Optimizer::Optimizer";
  if (!(std::isfinite(o.maxGradNorm) && o.maxGradNorm >= 0))
    detail::fail(where, "expected a finite maxGradNorm >= 0 (0: no clipping), got {}",
                 o.maxGradNorm);
  if (!(std::isfinite(o.loraPlusRatio) && o.loraPlusRatio > 0))
    detail::fail(where, "expected a finite loraPlusRatio > 0, got {}", o.loraPlusRatio);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> std::uint64_t Optimizer<Scalar, Rule>::fingerprint(
    const LayerType& layer) {
  std::uint64_t h = 1469598103934665603ULL;
  const auto mix = [&h](std::uint64_t word) {
    h ^= word;
    h *= 1099511628211ULL;
  };
  const auto mixAll = [&mix](const Scalar* data, Index rows, Index cols) {
    mix(static_cast<std::uint64_t>(rows));
    mix(static_cast<std::uint64_t>(cols));
    for (Index i = 0; i < rows * cols; ++i) {
      std::conditional_t<sizeof(Scalar) == 8, std::uint64_t, std::uint32_t> bits;
      std::memcpy(&bits, data + i, sizeof(Scalar));
      mix(bits);
    }
  };
  for (const Matrix* m : {&layer.A(), &layer.B()}) mixAll(m->data(), m->rows(), m->cols());
  mixAll(layer.magnitude().data(), layer.magnitude().size(), 1);
  return h;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::fresh(Entry& e) const {
  const LayerType& l = *e.layer;
  m_rule.initialize(e.a, l.rank(), l.inFeatures());
  m_rule.initialize(e.b, l.rank(), l.outFeatures());
  if (l.isDora()) {
    m_rule.initialize(e.m, 1, l.outFeatures());
    e.mSteps.assign(1, 0);
  } else {
    e.m = {};
    e.mSteps.clear();
  }
  e.steps.assign(static_cast<std::size_t>(l.rank()), 0);
  e.rank = l.rank();
  e.fingerprint = fingerprint(l);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
auto Optimizer<Scalar, Rule>::find(const LayerType& layer) const -> const Entry* {
  for (const Entry& e : m_entries)
    if (e.layer == &layer) return &e;
  return nullptr;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
auto Optimizer<Scalar, Rule>::entry(const char* where, const LayerType& layer) const
    -> const Entry& {
  const Entry* e = find(layer);
  if (e == nullptr)
    detail::fail(where,
                 "expected a layer registered with this optimizer (add it first), got "
                 "an unknown one");
  return *e;
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::checkInSync(const char* where, const Entry& e) const {
  const LayerType& l = *e.layer;
  if (l.isMerged())
    detail::fail(where, "expected unmerged layers, got '{}' merged (unmerge first)", e.name);
  if (l.rank() != e.rank)
    detail::fail(where,
                 "expected layer '{}' at rank {}, the rank of the optimizer's state, got rank "
                 "{}: it was resized behind the optimizer's back (resize through "
                 "Optimizer::resize/keepDirections, or pass the ResizeReport to carryState)",
                 e.name, e.rank, l.rank());
  if (fingerprint(l) != e.fingerprint)
    detail::fail(where,
                 "expected the factors of layer '{}' as the optimizer left them, got factors "
                 "changed behind its back (resize, keepDirections, setFactors, updateFactors, "
                 "setMagnitude or DoRA turned on or off): its moments would point at the wrong "
                 "coordinates (use Optimizer::resize/keepDirections, carryState(layer, report) "
                 "or resetState(layer))",
                 e.name);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
void Optimizer<Scalar, Rule>::apply(Entry& e, const ResizeReport<Scalar>& report) {
  const GradientMaps<Scalar> maps = GradientMaps<Scalar>::from(report);
  StepCounts steps = carrySteps(e.steps, maps.forA, maps.forB);
  carryMoments(e.a, maps.forA, maps.c, m_options.secondMoments);
  carryMoments(e.b, maps.forB, maps.c, m_options.secondMoments);
  e.steps = std::move(steps);
  e.rank = report.newRank;
  e.fingerprint = fingerprint(*e.layer);
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar>
bool Optimizer<Scalar, Rule>::finite(const Moments<Scalar>& m) {
  return m.first.allFinite() && m.second.allFinite();
}

template <typename Scalar, typename Rule>
requires UpdateRule<Rule, Scalar> StepReport Optimizer<Scalar, Rule>::stepImpl() {
  constexpr const char* where = "Optimizer::step";
  if (m_entries.empty())
    detail::fail(where, "expected at least one layer (call add first), got none");
  double norm = 0;
  for (const Entry& e : m_entries) {
    checkInSync(where, e);
    const LayerType& l = *e.layer;
    if (!l.gradA().allFinite() || !l.gradB().allFinite() || !l.gradMagnitude().allFinite())
      detail::fail(where,
                   "expected finite gradients, got NaN or Inf in layer '{}' (step refused: "
                   "parameters and state unchanged)",
                   e.name);
    norm = std::hypot(norm, std::hypot(static_cast<double>(l.gradA().stableNorm()),
                                       static_cast<double>(l.gradB().stableNorm())));
    norm = std::hypot(norm, static_cast<double>(l.gradMagnitude().stableNorm()));
  }
  if (!std::isfinite(norm))
    detail::fail(where,
                 "expected a finite gradient norm, got {} (step refused: parameters and state "
                 "unchanged)",
                 norm);
  StepReport report;
  report.gradNorm = norm;
  if (m_options.maxGradNorm > 0)
    report.clipCoefficient = std::min(1.0, m_options.maxGradNorm / (norm + 1e-6));
  report.learningRateA = m_rule.learningRate();
  report.learningRateB = report.learningRateA * m_options.loraPlusRatio;

  struct Pending {
    Matrix A, Bt, M;  // M: the DoRA magnitude as 1 x out (empty without DoRA)
    Moments<Scalar> a, b, m;
  };
  std::vector<Pending> pending;
  pending.reserve(m_entries.size());
  for (const Entry& e : m_entries) {
    const LayerType& l = *e.layer;
    Pending p{l.A(), l.B().transpose(), l.magnitude().transpose(), e.a, e.b, e.m};
    Matrix gA = l.gradA();
    Matrix gBt = l.gradB().transpose();
    if (report.clipCoefficient < 1) {
      gA *= static_cast<Scalar>(report.clipCoefficient);
      gBt *= static_cast<Scalar>(report.clipCoefficient);
    }
    m_rule.update(p.A, gA, p.a, e.steps, report.learningRateA);
    m_rule.update(p.Bt, gBt, p.b, e.steps, report.learningRateB);
    if (l.isDora()) {
      Matrix gM = l.gradMagnitude().transpose();
      if (report.clipCoefficient < 1) gM *= static_cast<Scalar>(report.clipCoefficient);
      m_rule.update(p.M, gM, p.m, e.mSteps, report.learningRateA);
    }
    if (!p.A.allFinite() || !p.Bt.allFinite() || !p.M.allFinite() || !finite(p.a) || !finite(p.b) ||
        !finite(p.m))
      detail::fail(where,
                   "expected a finite update, got NaN or Inf in layer '{}' (step refused: "
                   "parameters and state unchanged)",
                   e.name);
    pending.push_back(std::move(p));
  }
  for (std::size_t i = 0; i < m_entries.size(); ++i) {  // commit: checked above
    Entry& e = m_entries[i];
    Pending& p = pending[i];
    e.layer->setFactors(p.A, p.Bt.transpose());
    if (e.layer->isDora()) e.layer->setMagnitude(p.M.transpose());
    e.a = std::move(p.a);
    e.b = std::move(p.b);
    e.m = std::move(p.m);
    for (auto& t : e.steps) ++t;
    for (auto& t : e.mSteps) ++t;
    e.fingerprint = fingerprint(*e.layer);
  }
  report.step = ++m_steps;
  return report;
}

// Compiled once in liblorapp (src/train/optimizer.cpp). Define LORA_NO_EXTERN_TEMPLATES to
// compile them in the translation unit instead, with its own flags.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class Optimizer<float, Sgd>;
extern template class Optimizer<double, Sgd>;
extern template class Optimizer<float, AdamW>;
extern template class Optimizer<double, AdamW>;
#endif

/// PyTorch's SGD over LoRA layers.
template <typename Scalar>
using SgdOptimizer = Optimizer<Scalar, Sgd>;
/// PyTorch's AdamW over LoRA layers.
template <typename Scalar>
using AdamWOptimizer = Optimizer<Scalar, AdamW>;

}  // namespace lora::train
