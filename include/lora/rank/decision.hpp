#pragma once
/// \file decision.hpp
/// \brief What a rank selector says, and the concept every selector satisfies.

#include <concepts>
#include <string>

#include "lora/detail/eigen.hpp"

namespace lora::rank {

/// \brief A selector's answer for one observation: whether to change the rank, why, and to what.
///
/// A selector never resizes anything itself. The caller resizes the layer (Layer::resize), then
/// tells the selector with setRank(), as the article's example loops call `update_rank`.
struct Decision {
  bool adjust = false;       ///< true: the selector asks for newRank
  std::string reason;        ///< a stable reason code (each selector documents its codes)
  Eigen::Index newRank = 0;  ///< the rank asked for (the current rank when !adjust)

  friend bool operator==(const Decision&, const Decision&) = default;
};

/// \brief S is a Selector for observations of type Observation when `s.observe(o)` returns a
/// Decision, `s.currentRank()` reads the rank it believes the layer has and `s.setRank(r)` tells
/// it the rank the caller applied. Selectors are small value types holding their parameters and
/// their history.
template <typename S, typename Observation>
concept Selector = std::copy_constructible<S> &&
    requires(S s, const S& cs, const Observation& o, Eigen::Index r) {
  { s.observe(o) } -> std::same_as<Decision>;
  { cs.currentRank() } -> std::convertible_to<Eigen::Index>;
  s.setRank(r);
  { S::name() } -> std::convertible_to<std::string>;
};

}  // namespace lora::rank
