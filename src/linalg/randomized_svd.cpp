// The explicit instantiations that lora/linalg/randomized_svd.hpp declares `extern template`,
// compiled once here instead of in every user's translation unit.
#include "lora/linalg/randomized_svd.hpp"

namespace lora::detail {
template linalg::RandomizedSVDResult<float> randomizedSVDStored<float>(const StridedView<float>&,
                                                                       bool, Eigen::Index,
                                                                       Eigen::Index, Rng&);
template linalg::RandomizedSVDResult<double> randomizedSVDStored<double>(const StridedView<double>&,
                                                                         bool, Eigen::Index,
                                                                         Eigen::Index, Rng&);
}  // namespace lora::detail
