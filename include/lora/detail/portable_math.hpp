#pragma once
// Elementary functions built from IEEE-754 basic operations only (+, -, *, /, sqrt, frexp, ldexp),
// which are correctly rounded everywhere. The C library's log/exp/cos are not, so anything that
// must give the same bits on every platform (seeded random numbers) uses these instead.

#include <cmath>
#include <limits>

#if defined(__clang__)
#define LORA_NO_FP_CONTRACT_FN
#define LORA_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define LORA_NO_FP_CONTRACT_FN __attribute__((optimize("fp-contract=off")))
#define LORA_NO_FP_CONTRACT_BODY
#else
#define LORA_NO_FP_CONTRACT_FN
#define LORA_NO_FP_CONTRACT_BODY
#endif

namespace lora::detail {

/// Natural logarithm of x > 0, accurate to about 1 ulp, bit-identical on every IEEE-754 platform.
/// x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(t), t = (m - 1) / (m + 1), by its
/// odd series (|t| < 0.172, 13 terms reach double precision).
LORA_NO_FP_CONTRACT_FN inline double portableLog(double x) {
  LORA_NO_FP_CONTRACT_BODY
  if (!(x > 0.0))
    return x == 0.0 ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::quiet_NaN();
  if (x == std::numeric_limits<double>::infinity()) return x;
  int e = 0;
  double m = std::frexp(x, &e);  // m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m = m * 2.0;
    e = e - 1;
  }
  const double t = (m - 1.0) / (m + 1.0);
  const double t2 = t * t;
  double series = 1.0 / 27.0;
  for (int k = 12; k >= 0; --k) {
    series = series * t2;
    series = series + 1.0 / static_cast<double>(2 * k + 1);
  }
  const double logm = 2.0 * t * series;
  // ln 2 split into a part exact in double times any int exponent, and the rest.
  constexpr double ln2Hi = 6.93147180369123816490e-01;
  constexpr double ln2Lo = 1.90821492927058770002e-10;
  const double ed = static_cast<double>(e);
  const double lo = ed * ln2Lo;
  const double hi = ed * ln2Hi;
  return hi + (lo + logm);
}

}  // namespace lora::detail
