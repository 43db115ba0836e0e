#pragma once
/// \file random.hpp
/// \brief Seeded, platform-independent random numbers.

#include <array>
#include <cmath>
#include <cstdint>

#include "lora/detail/eigen.hpp"

#include "lora/detail/portable_math.hpp"
#include "lora/error.hpp"

namespace lora {

/// \brief xoshiro256** generator seeded through SplitMix64, with its own uniform and normal
/// distributions.
///
/// The standard library's distributions (std::normal_distribution, ...) give different values on
/// different standard libraries; these use integer arithmetic and correctly rounded floating-point
/// operations only, so the same seed gives the same bits on every platform.
/// Source: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2021).
///
/// \code
/// lora::Rng rng(42);
/// double u = rng.uniform01();   // in [0, 1)
/// double z = rng.normal();      // N(0, 1)
/// \endcode
class Rng {
 public:
  using result_type = std::uint64_t;

  explicit Rng(std::uint64_t seed = 0) noexcept { reseed(seed); }

  /// Restarts the stream from \p seed.
  void reseed(std::uint64_t seed) noexcept {
    std::uint64_t x = seed;
    for (auto& word : m_state) word = splitMix64(x);
    m_hasSpare = false;
    m_spare = 0.0;
  }

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return ~result_type{0}; }

  /// Next 64 random bits.
  result_type operator()() noexcept {
    const std::uint64_t result = rotl(m_state[1] * 5, 7) * 9;
    const std::uint64_t t = m_state[1] << 17;
    m_state[2] ^= m_state[0];
    m_state[3] ^= m_state[1];
    m_state[1] ^= m_state[2];
    m_state[0] ^= m_state[3];
    m_state[2] ^= t;
    m_state[3] = rotl(m_state[3], 45);
    return result;
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform01() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

  /// Uniform double in [lo, hi) (lo <= hi, finite; not checked here: a per-draw primitive).
  LORA_NO_FP_CONTRACT_FN double uniform(double lo, double hi) noexcept {
    LORA_NO_FP_CONTRACT_BODY
    const double u = uniform01();
    const double width = hi - lo;
    const double offset = width * u;
    return lo + offset;
  }

  /// Standard normal N(0, 1) by Marsaglia's polar method (pairs; the second value is kept).
  LORA_NO_FP_CONTRACT_FN double normal() noexcept {
    LORA_NO_FP_CONTRACT_BODY
    if (m_hasSpare) {
      m_hasSpare = false;
      return m_spare;
    }
    double u = 0.0;
    double v = 0.0;
    double s = 0.0;
    do {
      u = uniform(-1.0, 1.0);
      v = uniform(-1.0, 1.0);
      const double uu = u * u;
      const double vv = v * v;
      s = uu + vv;
    } while (s >= 1.0 || s == 0.0);
    const double logS = detail::portableLog(s);
    const double factor = std::sqrt((-2.0 * logS) / s);
    m_spare = v * factor;
    m_hasSpare = true;
    return u * factor;
  }

  /// Normal N(mean, stddev^2).
  LORA_NO_FP_CONTRACT_FN double normal(double mean, double stddev) noexcept {
    LORA_NO_FP_CONTRACT_BODY
    const double z = normal();
    const double scaled = stddev * z;
    return mean + scaled;
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  static constexpr std::uint64_t splitMix64(std::uint64_t& x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::array<std::uint64_t, 4> m_state{};
  bool m_hasSpare = false;
  double m_spare = 0.0;
};

/// Fills \p m with U(lo, hi), row by row (the order PyTorch's row-major tensors use).
template <typename Derived>
void fillUniform(Eigen::DenseBase<Derived>& m, Rng& rng, double lo, double hi) {
  using Scalar = typename Derived::Scalar;
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo <= hi))
    detail::fail("fillUniform", "expected finite bounds with lo <= hi, got [{}, {}]", lo, hi);
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<Scalar>(rng.uniform(lo, hi));
}

/// Fills \p m with N(mean, stddev^2), row by row.
template <typename Derived>
void fillNormal(Eigen::DenseBase<Derived>& m, Rng& rng, double mean, double stddev) {
  using Scalar = typename Derived::Scalar;
  if (!(std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0.0))
    detail::fail("fillNormal",
                 "expected a finite mean and a finite stddev >= 0, got mean {} and stddev {}", mean,
                 stddev);
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<Scalar>(rng.normal(mean, stddev));
}

}  // namespace lora
