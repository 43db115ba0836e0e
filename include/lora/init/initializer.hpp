#pragma once
/// \file initializer.hpp
/// \brief The initializer concept: how a policy produces the starting factors A and B.

#include <concepts>
#include <functional>
#include <string>
#include <utility>

#include <Eigen/Core>

#include "lora/error.hpp"
#include "lora/random.hpp"
#include "lora/scaling.hpp"

namespace lora::init {

/// \brief What an initializer is told about the layer it initializes.
///
/// An aggregate, so later fields (base weight, gradients, activations, depth) extend it without
/// breaking existing policies.
template <typename Scalar>
struct Request {
  Eigen::Index outFeatures = 0;  ///< rows of B (and of the base weight)
  Eigen::Index inFeatures = 0;   ///< columns of A (and of the base weight)
  Eigen::Index rank = 0;         ///< r, rows of A and columns of B
  double alpha = 1.0;            ///< lora_alpha
  ScalingMode scaling = ScalingMode::Standard;
};

/// \brief The factors an initializer produces: A (r x in) and B (out x r).
template <typename Scalar>
struct Factors {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> A;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> B;
};

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
  requires Initializer<P, Scalar> &&(!std::same_as<std::remove_cvref_t<P>, AnyInitializer>)
      AnyInitializer(P policy)  // NOLINT(google-explicit-constructor): policies convert implicitly
      : m_name(P::name()), m_fn([p = std::move(policy)](const Request<Scalar>& request, Rng& rng) {
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

 private:
  std::string m_name;
  std::function<Factors<Scalar>(const Request<Scalar>&, Rng&)> m_fn;
};

}  // namespace lora::init
