// The explicit instantiations that the SVD-family initializers' headers declare `extern template`:
// their initialize<float> and initialize<double> are compiled here once, with the partial,
// randomized and dense SVDs they call, instead of in each translation unit that uses them.
#include "lora/init/eva.hpp"
#include "lora/init/lora_ga.hpp"
#include "lora/init/milora.hpp"
#include "lora/init/olora.hpp"
#include "lora/init/peft_orthogonal.hpp"
#include "lora/init/pissa.hpp"
#include "lora/init/svd_based.hpp"

namespace lora::init {
#define LORA_INSTANTIATE_INITIALIZER(Policy)                                            \
  template Factors<float> Policy::initialize<float>(const Request<float>&, Rng&) const; \
  template Factors<double> Policy::initialize<double>(const Request<double>&, Rng&) const;
LORA_INSTANTIATE_INITIALIZER(Pissa)
LORA_INSTANTIATE_INITIALIZER(Milora)
LORA_INSTANTIATE_INITIALIZER(Olora)
LORA_INSTANTIATE_INITIALIZER(LoraGa)
LORA_INSTANTIATE_INITIALIZER(PeftOrthogonal)
LORA_INSTANTIATE_INITIALIZER(Eva)
LORA_INSTANTIATE_INITIALIZER(SvdBased)
#undef LORA_INSTANTIATE_INITIALIZER
}  // namespace lora::init
