#pragma once
/// \file aliasing.hpp
/// \brief Internal: whether two Eigen objects share memory, so that an output written in place
/// cannot change an input that is still being read.

#include "lora/detail/eigen.hpp"

namespace lora::detail {

/// The bytes [begin, end) an object's coefficients span (empty for an empty object).
struct ByteRange {
  const unsigned char* begin = nullptr;
  const unsigned char* end = nullptr;
  bool intersects(const ByteRange& other) const noexcept {
    return begin != end && other.begin != other.end && begin < other.end && other.begin < end;
  }
};

/// The span of a strided buffer: outerSize runs of innerSize coefficients.
template <typename Scalar>
ByteRange byteRange(const Scalar* data, Eigen::Index innerSize, Eigen::Index outerSize,
                    Eigen::Index innerStride, Eigen::Index outerStride) noexcept {
  if (data == nullptr || innerSize <= 0 || outerSize <= 0) return {};
  const Eigen::Index last = (outerSize - 1) * outerStride + (innerSize - 1) * innerStride;
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  return {p, p + (last + 1) * static_cast<Eigen::Index>(sizeof(Scalar))};
}

template <typename Derived>
inline constexpr bool kDirectAccess = (Derived::Flags & Eigen::DirectAccessBit) != 0;

/// The span of an object with direct access (Matrix, Map, Ref, Block, Transpose of those).
template <typename Derived>
ByteRange byteRange(const Eigen::DenseBase<Derived>& m) noexcept {
  static_assert(kDirectAccess<Derived>, "byteRange needs an object with direct memory access");
  const Derived& d = m.derived();
  return byteRange(d.data(), d.innerSize(), d.outerSize(), d.innerStride(), d.outerStride());
}

/// Whether writing \p out may change \p in: they share memory, or one of them is an expression
/// whose memory cannot be known (it is then treated as shared).
template <typename In, typename Out>
bool mayAlias(const Eigen::DenseBase<In>& in, const Eigen::DenseBase<Out>& out) noexcept {
  if constexpr (kDirectAccess<In> && kDirectAccess<Out>) {
    return byteRange(in).intersects(byteRange(out));
  } else {
    return true;
  }
}

}  // namespace lora::detail
