// The explicit instantiations that lora/linalg/partial_svd.hpp declares `extern template` (the
// Lanczos and block Krylov SVDs, the heaviest templates of the library to compile), compiled once
// here instead of in every user's translation unit.
#include "lora/linalg/partial_svd.hpp"

namespace lora::linalg {
template class PartialSVD<float>;
template class PartialSVD<double>;
}  // namespace lora::linalg
