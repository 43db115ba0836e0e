// The explicit instantiations that the headers declare `extern template`: the factored, partial and
// randomized SVDs for float and double, compiled once here instead of in every user's translation
// unit (they are the heaviest templates of the library to compile).
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
