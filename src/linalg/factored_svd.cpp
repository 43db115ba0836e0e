// The explicit instantiations that lora/linalg/factored_svd.hpp declares `extern template`,
// compiled once here instead of in every user's translation unit.
#include "lora/linalg/factored_svd.hpp"

namespace lora::linalg {
template class FactoredSVD<float>;
template class FactoredSVD<double>;
}  // namespace lora::linalg
