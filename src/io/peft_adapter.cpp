// The explicit instantiations that lora/io/peft_adapter.hpp declares `extern template`: the
// loader of PeftAdapter<float> and <double> (decoding, Layer construction) is compiled here once
// instead of in each translation unit that includes the header.
#include "lora/io/peft_adapter.hpp"

namespace lora {
template class PeftAdapter<float>;
template class PeftAdapter<double>;
}  // namespace lora
