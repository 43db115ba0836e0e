#pragma once
/// \file initializer.hpp
/// \brief The initializer concept: how a policy produces the starting factors A and B.

#include <concepts>
#include <functional>
#include <string>
#include <utility>

#include "lora/detail/eigen.hpp"

#include "lora/base_weight.hpp"
#include "lora/error.hpp"
#include "lora/random.hpp"
#include "lora/scaling.hpp"

namespace lora::init {

/// \brief What an initializer is told about the layer it initializes.
///
/// What is per layer travels here: the shape, the rank, alpha and the scaling rule, and the
/// layer's base weight W when the layer is built on one (PiSSA, MiLoRA, OLoRA, LoRA-GA's residual
/// and the statistics-adaptive init read it). What belongs to one policy's method (a gradient,
/// activation statistics, a layer depth) is a parameter of that policy instead.
template <typename Scalar>
struct Request {
  Eigen::Index outFeatures = 0;  ///< rows of B (and of the base weight)
  Eigen::Index inFeatures = 0;   ///< columns of A (and of the base weight)
  Eigen::Index rank = 0;         ///< r, rows of A and columns of B
  double alpha = 1.0;            ///< lora_alpha
  ScalingMode scaling = ScalingMode::Standard;
  BaseWeight<Scalar> weight;  ///< the base weight W (out x in) if known; empty otherwise

  /// The layer's scaling s for this request.
  double scalingFactor() const noexcept { return scalingFor(alpha, rank, scaling); }
  bool hasWeight() const noexcept { return !weight.empty(); }
};

/// \brief What the initial factors ask of the base weight.
///
/// - Keep: W is left as it is (B·A = 0 at the start, or the caller accepts the changed output).
/// - SubtractDelta: W must become the residual W − s·B·A, so the model's output at step 0 equals
///   the base model's (PiSSA, MiLoRA, OLoRA, LoRA-GA, and any policy wrapped in SubtractDelta).
enum class BaseUpdate { Keep, SubtractDelta };

/// \brief The factors an initializer produces: A (r x in) and B (out x r), and what they ask of W.
template <typename Scalar>
struct Factors {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> A;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> B;
  BaseUpdate baseUpdate = BaseUpdate::Keep;
};

/// Throws unless \p request carries the base weight with the request's shape; \p who names the
/// policy for the message.
template <typename Scalar>
void requireWeight(const Request<Scalar>& request, const char* who) {
  if (request.weight.empty())
    detail::fail(who,
                 "expected the layer's base weight in the request (build the Layer on its base "
                 "weight), got none");
  if (request.weight.rows() != request.outFeatures || request.weight.cols() != request.inFeatures)
    detail::fail(who, "expected a base weight of {}x{} (out x in), got {}x{}", request.outFeatures,
                 request.inFeatures, request.weight.rows(), request.weight.cols());
}

/// The base weight of \p request as a dense column-major copy (for factorizations that need one).
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> weightCopy(const Request<Scalar>& request) {
  return request.weight.visit(
      [](const auto& W) { return Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>(W); });
}

/// Applies \p factors' base update to \p weight in place: W −= s·B·A when it asks for
/// SubtractDelta (one rank-r GEMM update, no out x in temporary); nothing otherwise.
template <typename Scalar>
void applyBaseUpdate(const BaseWeight<Scalar>& weight, const Factors<Scalar>& factors, double s) {
  constexpr const char* where = "init::applyBaseUpdate";
  if (factors.baseUpdate == BaseUpdate::Keep) return;
  if (weight.empty())
    detail::fail(where, "expected a base weight to subtract the initial delta from, got none");
  if (!weight.writable())
    detail::fail(where,
                 "expected a writable base weight (the init subtracts s·B·A), got a "
                 "read-only view");
  if (weight.rows() != factors.B.rows() || weight.cols() != factors.A.cols())
    detail::fail(where, "expected a base weight of {}x{}, got {}x{}", factors.B.rows(),
                 factors.A.cols(), weight.rows(), weight.cols());
  const Scalar scale = static_cast<Scalar>(s);
  weight.visitMutable([&](auto& W) { W.noalias() -= (scale * factors.B) * factors.A; });
}

/// \brief An initializer is data-dependent when its factors come from data the layer does not
/// keep (the base weight at init time, a gradient, activations). A layer that grows later does not
/// re-run such a policy: its new rows of A come from PeftDefault's distribution instead.
template <typename P>
concept DataDependent = requires {
  { P::dataDependent } -> std::convertible_to<bool>;
}
&&static_cast<bool>(P::dataDependent);

/// \brief A policy P is an Initializer for Scalar when `p.initialize(request, rng)` returns the
/// factors for \p request, drawing every random number from \p rng (so a seed fixes the bits).
///
/// Policies are small value types: cheap to copy, holding their parameters, owning no layer.
template <typename P, typename Scalar>
concept Initializer = std::copy_constructible<P> &&
    requires(const P& policy, const Request<Scalar>& request, Rng& rng) {
  { policy.initialize(request, rng) } -> std::same_as<Factors<Scalar>>;
  { P::name() } -> std::convertible_to<std::string>;
};

/// \brief Type-erased holder for any Initializer, so a layer can keep the policy it was made with
/// (a grown layer draws its new rows of A from it).
template <typename Scalar>
class AnyInitializer {
 public:
  template <typename P>
  requires(!std::same_as<std::remove_cvref_t<P>, AnyInitializer>) &&
      Initializer<P, Scalar> AnyInitializer(
          P policy)  // NOLINT(google-explicit-constructor): policies convert implicitly
      : m_name(P::name()),
  m_dataDependent(DataDependent<P>),
  m_fn([p = std::move(policy)](const Request<Scalar>& request, Rng& rng) {
    return p.initialize(request, rng);
  }) {}

  /// Runs the held policy and checks the shapes it returned.
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    Factors<Scalar> f = m_fn(request, rng);
    if (f.A.rows() != request.rank || f.A.cols() != request.inFeatures ||
        f.B.rows() != request.outFeatures || f.B.cols() != request.rank)
      detail::fail(
          "AnyInitializer::initialize",
          "expected initializer '{}' to return A {}x{} and B {}x{}, got A {}x{} and B {}x{}",
          m_name, request.rank, request.inFeatures, request.outFeatures, request.rank, f.A.rows(),
          f.A.cols(), f.B.rows(), f.B.cols());
    return f;
  }
  const std::string& name() const noexcept { return m_name; }
  /// True for a DataDependent policy (see DataDependent).
  bool dataDependent() const noexcept { return m_dataDependent; }

 private:
  std::string m_name;
  bool m_dataDependent = false;
  std::function<Factors<Scalar>(const Request<Scalar>&, Rng&)> m_fn;
};

}  // namespace lora::init
