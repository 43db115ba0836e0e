#pragma once
/// \file init.hpp
/// \brief All initialization policies.

#include "lora/init/gaussian.hpp"
#include "lora/init/initializer.hpp"
#include "lora/init/kaiming_lora.hpp"
#include "lora/init/layer_adaptive.hpp"
#include "lora/init/orthogonal.hpp"
#include "lora/init/peft_default.hpp"
#include "lora/init/subtract_delta.hpp"
#include "lora/init/xavier_lora.hpp"
