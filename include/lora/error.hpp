#pragma once
/// \file error.hpp
/// \brief The single exception type of LoRA++.

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace lora {

/// \brief Thrown for every bad input the library detects.
///
/// Derived from std::runtime_error, so callers
/// can catch it as any standard exception. The message has the form
/// `Class::method(): expected <what>, got <what came>`. An operation that throws leaves the
/// object it was called on unchanged (strong guarantee).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

/// \brief Throws lora::Error with the message `where(): <message>`; by convention the message
/// reads "expected <what was expected>, got <what came>".
template <typename... Args>
[[noreturn]] void fail(std::string_view where, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}(): {}", where, fmt::format(format, std::forward<Args>(args)...)));
}

}  // namespace detail
}  // namespace lora
