#pragma once
/// \file init.hpp
/// \brief All initialization policies.

#include "lora/init/eva.hpp"
#include "lora/init/gaussian.hpp"
#include "lora/init/initializer.hpp"
#include "lora/init/kaiming_lora.hpp"
#include "lora/init/layer_adaptive.hpp"
#include "lora/init/lora_ga.hpp"
#include "lora/init/milora.hpp"
#include "lora/init/olora.hpp"
#include "lora/init/orthogonal.hpp"
#include "lora/init/peft_default.hpp"
#include "lora/init/peft_orthogonal.hpp"
#include "lora/init/pissa.hpp"
#include "lora/init/statistics_adaptive.hpp"
#include "lora/init/subtract_delta.hpp"
#include "lora/init/svd_based.hpp"
#include "lora/init/xavier_lora.hpp"
