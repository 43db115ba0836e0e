// The explicit instantiations that lora/layer.hpp declares `extern template`: every non-template
// member of Layer<float> and Layer<double> (constructors, merge/unmerge, resize, keepDirections,
// spectrum, DoRA norms, ...) is compiled here once instead of in each translation unit that
// includes the header. The member templates (forward, backward, ...) stay in the header.
#include "lora/layer.hpp"

namespace lora {
template class Layer<float>;
template class Layer<double>;
}  // namespace lora
