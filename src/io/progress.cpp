#include "lora/io/progress.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <unistd.h>

#include <fmt/format.h>

namespace lora::io {
namespace {

constexpr auto kInterval = std::chrono::milliseconds(100);

bool shouldDraw(bool quiet) {
  if (quiet) return false;
  const char* env = std::getenv("LORA_PROGRESS");
  if (env != nullptr && std::strcmp(env, "0") == 0) return false;
  if (env != nullptr && std::strcmp(env, "1") == 0) return true;
  return ::isatty(2) == 1;
}

}  // namespace

Progress::Progress(std::string label, std::size_t total, bool quiet)
    : m_label(std::move(label)), m_total(total), m_enabled(shouldDraw(quiet)) {
  if (m_enabled) {
    std::lock_guard lock(m_mutex);
    draw(0);
  }
}

Progress::~Progress() {
  if (!m_enabled) return;
  try {
    std::lock_guard lock(m_mutex);
    if (!m_detailDrawn) draw(m_done.load());
    std::fputc('\n', stderr);
    std::fflush(stderr);
  } catch (...) {  // a failed write to stderr must not end the program
  }
}

void Progress::tick() {
  const std::size_t done = ++m_done;
  if (!m_enabled) return;
  if (done == m_total) {  // the last tick always draws
    std::lock_guard lock(m_mutex);
    if (done > m_drawn || !m_detailDrawn) draw(done);
    return;
  }
  // Other ticks draw only when no other thread is drawing and the last draw is old enough.
  std::unique_lock lock(m_mutex, std::try_to_lock);
  if (!lock.owns_lock() || done < m_drawn) return;
  if (std::chrono::steady_clock::now() - m_last < kInterval) return;
  draw(done);
}

void Progress::setDetail(std::string detail) {
  if (!m_enabled) return;
  std::lock_guard lock(m_mutex);
  if (detail == m_detail) return;
  m_detail = std::move(detail);
  m_detailDrawn = false;
}

void Progress::draw(std::size_t done) {
  m_drawn = std::max(m_drawn, done);
  m_detailDrawn = true;
  m_last = std::chrono::steady_clock::now();
  constexpr std::size_t kBar = 30;
  const std::size_t filled = m_total == 0 ? kBar : std::min(done, m_total) * kBar / m_total;
  std::string line = fmt::format("{} [{}{}] {}/{}", m_label, std::string(filled, '#'),
                                 std::string(kBar - filled, ' '), done, m_total);
  if (!m_detail.empty()) line += " " + m_detail;
  const std::size_t width = line.size();
  if (width < m_width) line.append(m_width - width, ' ');  // cover a longer earlier line
  m_width = width;
  fmt::print(stderr, "\r{}", line);
  std::fflush(stderr);
}

}  // namespace lora::io
