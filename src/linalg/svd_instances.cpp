// The explicit instantiations that the headers declare `extern template`: the factored, partial and
// randomized SVDs for float and double, compiled once here instead of in every user's translation
// unit. One translation unit for the three: they share most of the Eigen code they instantiate
// (split in three, the same code took 163 s of compile time against 134 s here).
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"

namespace lora::linalg {
template class FactoredSVD<float>;
template class FactoredSVD<double>;
template class PartialSVD<float>;
template class PartialSVD<double>;
}  // namespace lora::linalg

namespace lora::detail {
template linalg::RandomizedSVDResult<float> randomizedSVDStored<float>(const StridedView<float>&,
                                                                       bool, Eigen::Index,
                                                                       Eigen::Index, Rng&);
template linalg::RandomizedSVDResult<double> randomizedSVDStored<double>(const StridedView<double>&,
                                                                         bool, Eigen::Index,
                                                                         Eigen::Index, Rng&);
}  // namespace lora::detail
