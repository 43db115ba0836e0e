// The explicit instantiations that lora/train/optimizer.hpp declares `extern template`: every
// member of Optimizer<float | double, Sgd | AdamW> (add, step, resize, state carrying, ...) is
// compiled here once instead of in each translation unit that includes the header.
#include "lora/train/optimizer.hpp"

namespace lora::train {
template class Optimizer<float, Sgd>;
template class Optimizer<double, Sgd>;
template class Optimizer<float, AdamW>;
template class Optimizer<double, AdamW>;
}  // namespace lora::train
