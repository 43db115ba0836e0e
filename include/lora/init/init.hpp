#pragma once
/// \file init.hpp
/// \brief All initialization policies.

#include "lora/init/gaussian.hpp"
#include "lora/init/initializer.hpp"
#include "lora/init/peft_default.hpp"
