// The explicit instantiations that lora/analysis/initialization_analyzer.hpp declares
// `extern template`: the trials of InitializationAnalyzer<float> and <double> (layers, factored
// SVDs, forward and backward passes) are compiled here once instead of in each translation unit
// that includes the header.
#include "lora/analysis/initialization_analyzer.hpp"

namespace lora::analysis {
template class InitializationAnalyzer<float>;
template class InitializationAnalyzer<double>;
}  // namespace lora::analysis
