#pragma once
/// \file lora.hpp
/// \brief Everything in LoRA++.

#include "lora/base_weight.hpp"
#include "lora/error.hpp"
#include "lora/init/init.hpp"
#include "lora/layer.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/partial_svd.hpp"
#include "lora/linalg/randomized_svd.hpp"
#include "lora/linalg/spectrum.hpp"
#include "lora/random.hpp"
#include "lora/resize.hpp"
#include "lora/scaling.hpp"
#include "lora/train/train.hpp"
