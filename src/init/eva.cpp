// The explicit instantiations that lora/init/eva_statistics.hpp declares `extern template`: the
// incremental PCA of EvaCollector<float> and <double> (its update and the SVDs under it).
#include "lora/init/eva_statistics.hpp"

namespace lora::init {
template class EvaCollector<float>;
template class EvaCollector<double>;
}  // namespace lora::init
