#pragma once
/// \file singular_factors.hpp
/// \brief The PiSSA-style split of singular triplets into LoRA factors.

#include "lora/detail/eigen.hpp"

#include "lora/init/initializer.hpp"

namespace lora::detail {

/// Factors whose scaled product is U diag(S) V^T: with S' = S / s,
/// A = diag(sqrt(S')) V^T (r x in), B = U diag(sqrt(S')) (out x r), so s·B·A = U diag(S) V^T, and
/// the base weight is asked to subtract it (PEFT `LoraLayer.pissa_init`).
template <typename Scalar, typename DerivedU, typename DerivedS, typename DerivedV>
init::Factors<Scalar> singularFactors(const Eigen::MatrixBase<DerivedU>& U,
                                      const Eigen::MatrixBase<DerivedS>& S,
                                      const Eigen::MatrixBase<DerivedV>& V, double scaling) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  const Vector root = (S.array() / static_cast<Scalar>(scaling)).sqrt().matrix();
  init::Factors<Scalar> f;
  f.A = root.asDiagonal() * V.transpose();
  f.B = U * root.asDiagonal();
  f.baseUpdate = init::BaseUpdate::SubtractDelta;
  return f;
}

}  // namespace lora::detail
