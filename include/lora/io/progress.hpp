#pragma once
/// \file progress.hpp
/// \brief A progress bar on stderr, for the `lora` tool and the examples.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

namespace lora::io {

/// \brief A progress bar on stderr: `label [#####         ] 3/10 detail`, redrawn in place.
///
/// It is drawn only when stderr is a terminal and \p quiet is false. The environment variable
/// `LORA_PROGRESS` overrides the terminal test: `LORA_PROGRESS=0` never draws, `LORA_PROGRESS=1`
/// draws even when stderr is a file or a pipe (any other value: the terminal test). The bar is
/// drawn at construction, then at most about 10 times a second, and always on the tick that
/// reaches the total; the destructor draws once more if the detail changed since, then ends the
/// line. tick() and setDetail() may be called from any thread.
class Progress {
 public:
  /// A bar named \p label that counts to \p total ticks.
  Progress(std::string label, std::size_t total, bool quiet);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  /// One more unit done.
  void tick();

  /// A short text drawn after the counter (e.g. "loss 0.231"), from the next draw on.
  void setDetail(std::string detail);

  /// Whether the bar is drawn at all.
  bool enabled() const noexcept { return m_enabled; }

 private:
  void draw(std::size_t done);  // with m_mutex held
  std::string m_label;
  std::size_t m_total;
  bool m_enabled;
  std::atomic<std::size_t> m_done{0};
  std::mutex m_mutex;
  std::string m_detail;       // guarded by m_mutex, as is everything below
  bool m_detailDrawn = true;  // the detail on screen is m_detail
  std::size_t m_drawn = 0;    // the count last drawn
  std::size_t m_width = 0;    // the length of the line last drawn
  std::chrono::steady_clock::time_point m_last{};
};

}  // namespace lora::io
