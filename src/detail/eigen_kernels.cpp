// Eigen's matrix-product kernels for float and double, compiled once for every translation unit
// that includes lora/detail/eigen.hpp (which declares them `extern template`).
#include "lora/detail/eigen.hpp"

namespace Eigen::internal {
LORA_EIGEN_PRODUCT_KERNELS(, float)
LORA_EIGEN_PRODUCT_KERNELS(, double)
}  // namespace Eigen::internal
