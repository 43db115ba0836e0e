#pragma once
/// \file subtract_delta.hpp
/// \brief Wraps any initializer so the base weight absorbs its initial delta.

#include <string>
#include <utility>

#include "lora/init/initializer.hpp"

namespace lora::init {

/// \brief Runs \p P, then asks the layer to replace W by W − s·B·A, as PiSSA does, so an init
/// that starts with B·A ≠ 0 (xavier_lora, kaiming_lora, svd_based, the article's orthogonal,
/// layer_adaptive, statistics-adaptive) leaves the model's output at step 0 unchanged.
///
/// Needs a writable base weight at construction (`Layer(W, options, SubtractDelta{XavierLora{}})`).
/// Costs one rank-r GEMM update of W on top of \p P.
template <typename P>
struct SubtractDelta {
  P policy{};

  static constexpr bool dataDependent = DataDependent<P>;
  static std::string name() {
    std::string n = P::name();  // appended in place: GCC 12 misreads `P::name() + "..."`
    n += "+subtract_delta";     // (-Warray-bounds false positive, GCC bug 105651)
    return n;
  }

  template <typename Scalar>
  requires Initializer<P, Scalar>
  Factors<Scalar> initialize(const Request<Scalar>& request, Rng& rng) const {
    Factors<Scalar> f = policy.initialize(request, rng);
    f.baseUpdate = BaseUpdate::SubtractDelta;
    return f;
  }
};

template <typename P>
SubtractDelta(P) -> SubtractDelta<P>;

}  // namespace lora::init
