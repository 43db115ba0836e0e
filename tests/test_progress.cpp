// lora/io/progress.hpp: what the bar writes to stderr (captured through a temporary file), when it
// writes nothing, LORA_PROGRESS, the detail text, ticks from several threads and the redraw rate.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "lora/io/progress.hpp"
#include "support/cli.hpp"

namespace {

using lora::io::Progress;

// Runs fn with file descriptor 2 redirected to a temporary file; returns what was written.
std::string captureStderr(const std::function<void()>& fn) {
  lora::test::ScratchDir tmp("progress");
  const std::string file = (tmp / "stderr.txt").string();
  std::fflush(stderr);
  const int saved = ::dup(2);
  std::FILE* out = std::fopen(file.c_str(), "w");
  if (saved < 0 || out == nullptr) {  // nothing to redirect to: fail, and do not run fn
    ADD_FAILURE() << "cannot redirect stderr to " << file;
    if (out != nullptr) std::fclose(out);
    if (saved >= 0) ::close(saved);
    return "<stderr not captured>";
  }
  ::dup2(::fileno(out), 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(out);
  return lora::test::readText(file);
}

// Sets LORA_PROGRESS for the scope (unset when value is null), restoring the earlier value.
class ProgressEnv {
 public:
  explicit ProgressEnv(const char* value) {
    if (const char* old = std::getenv("LORA_PROGRESS"); old != nullptr) m_old = old;
    if (value != nullptr)
      ::setenv("LORA_PROGRESS", value, 1);
    else
      ::unsetenv("LORA_PROGRESS");
  }
  ~ProgressEnv() {
    if (m_old)
      ::setenv("LORA_PROGRESS", m_old->c_str(), 1);
    else
      ::unsetenv("LORA_PROGRESS");
  }

 private:
  std::optional<std::string> m_old;
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1))
    ++n;
  return n;
}

TEST(Progress, ForcedOnDrawsLabelCounterAndDetail) {
  ProgressEnv env("1");
  bool enabled = false;
  const std::string text = captureStderr([&] {
    Progress progress("training", 3, false);
    enabled = progress.enabled();
    progress.tick();
    progress.setDetail("loss 0.231");
    progress.tick();
    progress.tick();
  });
  EXPECT_TRUE(enabled);
  EXPECT_NE(text.find("training ["), std::string::npos) << text;
  EXPECT_NE(text.find("3/3 loss 0.231"), std::string::npos) << text;
  EXPECT_NE(text.find("0/3"), std::string::npos) << text;  // drawn at construction
  EXPECT_EQ(text.back(), '\n');                            // the destructor ends the line
  EXPECT_EQ(count(text, "\n"), 1u) << text;
}

TEST(Progress, QuietOrLoraProgress0WritesNothing) {
  for (const char* value : {"1", "0", static_cast<const char*>(nullptr)}) {
    SCOPED_TRACE(value == nullptr ? "unset" : value);
    ProgressEnv env(value);
    bool enabled = true;
    const std::string text = captureStderr([&] {
      Progress progress("quiet", 2, true);  // quiet wins over LORA_PROGRESS=1
      enabled = progress.enabled();
      progress.setDetail("x");
      progress.tick();
      progress.tick();
    });
    EXPECT_FALSE(enabled);
    EXPECT_TRUE(text.empty()) << text;
  }
  ProgressEnv env("0");
  bool enabled = true;
  const std::string text = captureStderr([&] {
    Progress progress("off", 2, false);
    enabled = progress.enabled();
    progress.tick();
    progress.tick();
  });
  EXPECT_FALSE(enabled);
  EXPECT_TRUE(text.empty()) << text;
}

TEST(Progress, WithoutTheVariableAFileIsNotATerminal) {
  ProgressEnv env(nullptr);
  bool enabled = true;
  const std::string text = captureStderr([&] {
    Progress progress("auto", 1, false);
    enabled = progress.enabled();
    progress.tick();
  });
  EXPECT_FALSE(enabled);
  EXPECT_TRUE(text.empty()) << text;
}

TEST(Progress, DetailSetAfterTheLastTickIsDrawnAtTheEnd) {
  ProgressEnv env("1");
  const std::string text = captureStderr([] {
    Progress progress("eval", 2, false);
    progress.tick();
    progress.tick();
    progress.setDetail("a much longer detail text");
    progress.setDetail("short");
  });
  const std::size_t last = text.rfind('\r');
  ASSERT_NE(last, std::string::npos);
  const std::string line = text.substr(last + 1);
  EXPECT_EQ(line.rfind("eval [", 0), 0u) << line;
  EXPECT_NE(line.find("2/2 short"), std::string::npos) << line;
}

constexpr std::size_t kThreads = 4, kTicks = 2500;

TEST(Progress, ManyThreadsReachTheTotalWithFewRedraws) {
  ProgressEnv env("1");
  const auto start = std::chrono::steady_clock::now();
  const std::string text = captureStderr([&] {
    Progress progress("threads", kThreads * kTicks, false);
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < kThreads; ++t)
      pool.emplace_back([&progress, t] {
        for (std::size_t i = 0; i < kTicks; ++i) {
          if (i % 500 == 0) progress.setDetail("thread " + std::to_string(t));
          progress.tick();
        }
      });
    for (std::thread& th : pool) th.join();
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(text.find("10000/10000"), std::string::npos) << text.substr(0, 400);
  // Construction, the last tick and the end, plus at most one draw per 100 ms in between.
  EXPECT_LE(count(text, "\r"), 3u + static_cast<std::size_t>(seconds * 10) + 1) << seconds;
}

}  // namespace
