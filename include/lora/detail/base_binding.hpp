#pragma once
/// \file base_binding.hpp
/// \brief Internal: a layer's binding to the caller's base weight, and whether its delta is
/// merged into it.

#include "lora/detail/eigen.hpp"

#include "lora/base_weight.hpp"
#include "lora/error.hpp"

namespace lora::detail {

/// The base weight and bias a Layer is bound to, with its merge state. The merge belongs to the
/// layer that made it, so the binding does not travel with copies: a copy of a layer is unbound
/// and unmerged (bind it again), which keeps two copies from merging or unmerging one delta
/// twice into one weight. A move hands the binding over. Overwriting a merged layer (copy or move
/// assignment) is refused: its delta would be left in the weight with no layer to unmerge it.
template <typename Scalar>
struct BaseBinding {
  BaseWeight<Scalar> weight;
  BaseBias<Scalar> bias;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> mergeScale;  // DoRA c at merge time, to unmerge
  bool merged = false;

  BaseBinding() = default;
  BaseBinding(const BaseBinding&) noexcept {}
  BaseBinding(BaseBinding&& other) noexcept
      : weight(other.weight),
        bias(other.bias),
        mergeScale(std::move(other.mergeScale)),
        merged(other.merged) {
    other.reset();
  }
  BaseBinding& operator=(const BaseBinding& other) {
    if (this != &other) {
      refuseOverwrite();
      reset();
    }
    return *this;
  }
  BaseBinding& operator=(BaseBinding&& other) {
    if (this != &other) {
      refuseOverwrite();
      weight = other.weight;
      bias = other.bias;
      mergeScale = std::move(other.mergeScale);
      merged = other.merged;
      other.reset();
    }
    return *this;
  }
  ~BaseBinding() = default;

  void reset() noexcept {
    weight = {};
    bias = {};
    mergeScale.resize(0);
    merged = false;
  }

 private:
  void refuseOverwrite() const {
    if (merged)
      fail("Layer::operator=",
           "expected an unmerged layer on the left of the assignment (its delta is in the bound "
           "weight: unmerge() first), got a merged one");
  }
};

}  // namespace lora::detail
