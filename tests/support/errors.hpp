#pragma once
// Test support: checking lora::Error messages.

#include <exception>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "lora/error.hpp"

namespace lora::test {

/// The message of the lora::Error thrown by f, or a marker when none (or another type) is thrown.
inline std::string errorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const lora::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a lora::Error: ") + e.what() + ">";
  }
  return "<no exception>";
}

}  // namespace lora::test

#define EXPECT_CONTAINS(text, word) \
  EXPECT_NE(std::string(text).find(word), std::string::npos) << "in message: " << (text)
