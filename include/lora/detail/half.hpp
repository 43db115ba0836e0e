#pragma once
/// \file half.hpp
/// \brief Bit-exact conversions between float/double and the 16-bit formats F16 and BF16.
///
/// Only integer bit manipulation (std::bit_cast), no compiler half types, so the results do not
/// depend on the target. Narrowing rounds to nearest, ties to even (IEEE 754 default); a finite
/// value at or above `max + ulp/2` becomes infinity, NaN stays NaN (quiet, sign and top payload
/// bits kept). Widening is exact.

#include <bit>
#include <cstdint>
#include <type_traits>

namespace lora::detail {

/// \brief Layout of an IEEE-style binary format: `ExpBits` exponent bits, `ManBits` stored
/// fraction bits, bias `2^(ExpBits-1) - 1`.
///
/// F16 is `SmallFloatFormat<5, 10>` (IEEE binary16), BF16 is `SmallFloatFormat<8, 7>` (the top
/// half of a binary32).
template <int ExpBits, int ManBits>
struct SmallFloatFormat {
  static constexpr int kExpBits = ExpBits;
  static constexpr int kManBits = ManBits;
  static constexpr int kBias = (1 << (ExpBits - 1)) - 1;
  static constexpr std::uint32_t kExpMask = (1u << ExpBits) - 1u;
  static constexpr std::uint32_t kSignBit = 1u << (ExpBits + ManBits);
  static constexpr std::uint32_t kInf = kExpMask << ManBits;
  static constexpr std::uint32_t kQuietBit = 1u << (ManBits - 1);
};

/// \brief IEEE binary16: 1 sign, 5 exponent, 10 fraction bits.
using F16Format = SmallFloatFormat<5, 10>;
/// \brief bfloat16: 1 sign, 8 exponent, 7 fraction bits.
using BF16Format = SmallFloatFormat<8, 7>;

/// \brief Rounds the float or double `x` to the format `Dst`, ties to even, and returns its bits.
///
/// With `x = M * 2^E` (M an integer), the result is `round(M * 2^(E - q)) * 2^q` with `q` the
/// quantum of `Dst` at the magnitude of `x` (fixed at `2^(1 - bias - ManBits)` in the subnormal
/// range). The rounding carry flows into the exponent field, so it also covers the step from the
/// largest subnormal to the smallest normal and from the largest finite value to infinity. The
/// rounding is done once from the source value (no double rounding through float).
/// \code
/// std::uint16_t h = lora::detail::roundToFormat<lora::detail::F16Format>(1.0 / 3.0);  // 0x3555
/// \endcode
template <typename Dst, typename Src>
constexpr std::uint16_t roundToFormat(Src x) noexcept {
  static_assert(sizeof(Src) == 4 || sizeof(Src) == 8, "roundToFormat: Src must be float or double");
  using Bits = std::conditional_t<sizeof(Src) == 4, std::uint32_t, std::uint64_t>;
  constexpr int kSrcMan = sizeof(Src) == 4 ? 23 : 52;
  constexpr int kSrcExpBits = sizeof(Src) == 4 ? 8 : 11;
  constexpr int kSrcBias = (1 << (kSrcExpBits - 1)) - 1;
  constexpr Bits kSrcExpMask = (Bits{1} << kSrcExpBits) - 1;
  constexpr Bits kSrcManMask = (Bits{1} << kSrcMan) - 1;

  const Bits bits = std::bit_cast<Bits>(x);
  const auto sign =
      static_cast<std::uint32_t>(bits >> (kSrcExpBits + kSrcMan)) != 0u ? Dst::kSignBit : 0u;
  const Bits expField = (bits >> kSrcMan) & kSrcExpMask;
  const Bits man = bits & kSrcManMask;

  if (expField == kSrcExpMask) {  // inf or NaN
    if (man == 0) return static_cast<std::uint16_t>(sign | Dst::kInf);
    const auto payload = static_cast<std::uint32_t>(man >> (kSrcMan - Dst::kManBits));
    return static_cast<std::uint16_t>(sign | Dst::kInf | Dst::kQuietBit | payload);
  }
  if (expField == 0 && man == 0) return static_cast<std::uint16_t>(sign);  // signed zero

  // x = m * 2^e with m an integer of at most kSrcMan + 1 bits.
  std::uint64_t m = static_cast<std::uint64_t>(man);
  int e = 0;
  if (expField == 0) {
    e = 1 - kSrcBias - kSrcMan;
  } else {
    m |= std::uint64_t{1} << kSrcMan;
    e = static_cast<int>(expField) - kSrcBias - kSrcMan;
  }
  const int lead = e + static_cast<int>(std::bit_width(m)) - 1;  // exponent of the leading bit
  constexpr int kMinNormal = 1 - Dst::kBias;
  if (lead > Dst::kBias) return static_cast<std::uint16_t>(sign | Dst::kInf);  // overflow

  const int leadClamped = lead < kMinNormal ? kMinNormal : lead;
  const int q = leadClamped - Dst::kManBits;  // exponent of the target's last fraction bit
  std::uint64_t r = 0;
  if (e >= q) {
    r = m << (e - q);  // exact: at most kManBits + 1 bits
  } else {
    const int shift = q - e;
    if (shift <= 63) {
      const std::uint64_t kept = m >> shift;
      const std::uint64_t rest = m & ((std::uint64_t{1} << shift) - 1u);
      const std::uint64_t half = std::uint64_t{1} << (shift - 1);
      r = kept + ((rest > half || (rest == half && (kept & 1u) != 0u)) ? 1u : 0u);
    }  // else: below half of the smallest subnormal, rounds to zero (m < 2^53 <= 2^(shift-1))
  }
  // r holds the implicit bit (when normal), so adding it to (biased exponent - 1) << kManBits
  // gives the encoding; a carry out of the fraction increments the exponent field.
  const std::uint64_t encoded =
      (static_cast<std::uint64_t>(leadClamped + Dst::kBias - 1) << Dst::kManBits) + r;
  if (encoded >= Dst::kInf) return static_cast<std::uint16_t>(sign | Dst::kInf);
  return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(encoded));
}

/// \brief Widens the format `Src` (bits in the low 16 bits) to float, exactly.
///
/// Normal: `(-1)^s * 1.f * 2^(e - bias)`; subnormal: `(-1)^s * 0.f * 2^(1 - bias)`; inf and NaN
/// (payload shifted into the top fraction bits) keep their sign.
template <typename Src>
constexpr float widenToFloat(std::uint16_t h) noexcept {
  constexpr int kShift = 23 - Src::kManBits;
  const std::uint32_t sign =
      (static_cast<std::uint32_t>(h) & Src::kSignBit) != 0u ? 0x80000000u : 0u;
  const std::uint32_t expField = (static_cast<std::uint32_t>(h) >> Src::kManBits) & Src::kExpMask;
  std::uint32_t man = static_cast<std::uint32_t>(h) & ((1u << Src::kManBits) - 1u);
  if (expField == Src::kExpMask) {
    return std::bit_cast<float>(sign | 0x7f800000u | (man << kShift));
  }
  if (expField == 0) {
    if (man == 0) return std::bit_cast<float>(sign);
    // Subnormal: normalize so that the leading bit becomes the implicit bit.
    int exp = 1 - Src::kBias;
    while ((man & (1u << Src::kManBits)) == 0u) {
      man <<= 1;
      --exp;
    }
    man &= (1u << Src::kManBits) - 1u;
    return std::bit_cast<float>(sign | (static_cast<std::uint32_t>(exp + 127) << 23) |
                                (man << kShift));
  }
  const auto exp = static_cast<std::uint32_t>(static_cast<int>(expField) - Src::kBias + 127);
  return std::bit_cast<float>(sign | (exp << 23) | (man << kShift));
}

/// \brief float -> IEEE binary16 bits, round to nearest even. `floatToHalf(1.0f) == 0x3c00`.
constexpr std::uint16_t floatToHalf(float x) noexcept {
  return roundToFormat<F16Format>(x);
}
/// \brief double -> IEEE binary16 bits, rounded once from the double. `doubleToHalf(0.1) ==
/// 0x2e66`.
constexpr std::uint16_t doubleToHalf(double x) noexcept {
  return roundToFormat<F16Format>(x);
}
/// \brief IEEE binary16 bits -> float, exact. `halfToFloat(0x3c00) == 1.0f`.
constexpr float halfToFloat(std::uint16_t h) noexcept {
  return widenToFloat<F16Format>(h);
}

/// \brief float -> bfloat16 bits, round to nearest even. `floatToBf16(1.0f) == 0x3f80`.
constexpr std::uint16_t floatToBf16(float x) noexcept {
  return roundToFormat<BF16Format>(x);
}
/// \brief double -> bfloat16 bits, rounded once from the double. `doubleToBf16(0.1) == 0x3dcd`.
constexpr std::uint16_t doubleToBf16(double x) noexcept {
  return roundToFormat<BF16Format>(x);
}
/// \brief bfloat16 bits -> float, exact: the bits are the top half of the float.
constexpr float bf16ToFloat(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace lora::detail
