// Eigen's matrix-product kernels for float and double, compiled once for every translation unit
// that includes lora/detail/eigen.hpp (which declares them `extern template`), and the product
// driver every product of LoRA++ goes through (lora/detail/gemm.hpp).
#include "lora/detail/eigen.hpp"
#include "lora/detail/gemm.hpp"

namespace Eigen::internal {
LORA_EIGEN_PRODUCT_KERNELS(, float)
LORA_EIGEN_PRODUCT_KERNELS(, double)
}  // namespace Eigen::internal

namespace lora::detail {
template void gemmStrided<float>(GemmTarget<float>, const GemmView<float>&, bool,
                                 const GemmView<float>&, bool, float, bool);
template void gemmStrided<double>(GemmTarget<double>, const GemmView<double>&, bool,
                                  const GemmView<double>&, bool, double, bool);
}  // namespace lora::detail
