// `lora`: inspect and replay what LoRA++ does, from the command line.

#include <exception>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "lora/error.hpp"
#include "lora/threads.hpp"

namespace {

// Every error is exactly one line on stderr.
std::string oneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

// The adapter commands allocate and free the same few megabytes for every module (decoded
// factors, SVD work space, encoded tensors). glibc's defaults hand blocks of that size back to
// the kernel on every free (mmap'd chunks, heap trimming), and faulting them in again dominated a
// resize: 800 000 page faults, 2 s of system time for a 7B-shaped adapter. Keep freed memory for
// reuse instead; the peak stays that of the largest working set.
void keepFreedMemory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);   // blocks up to 32 MiB from the heap, not mmap
  mallopt(M_TRIM_THRESHOLD, 512 << 20);  // trim the heap only beyond 512 MiB free at its top
#endif
}

}  // namespace

int main(int argc, char** argv) {
  keepFreedMemory();
  CLI::App app{"lora: LoRA++ command-line tool"};
  app.require_subcommand(1);
  // --threads before the subcommand's name (the adapter subcommands also take it after), for
  // every subcommand; LORA_NUM_THREADS otherwise. Set before the subcommands are added: they
  // inherit fallthrough.
  int threads = 0;
  app.add_option("--threads", threads,
                 "threads, >= 1 (default: LORA_NUM_THREADS, else every core)");
  app.fallthrough();
  app.parse_complete_callback([&app, &threads] {
    bool given = app.count("--threads") > 0;
    for (const CLI::App* sub : app.get_subcommands()) {
      if (sub->get_option_no_throw("--threads") != nullptr && sub->count("--threads") > 0)
        given = true;
    }
    if (app.count("--threads") > 0) {
      if (threads < 1) throw lora::Error(fmt::format("expected --threads >= 1, got {}", threads));
      lora::setNumThreads(threads);
    }
    if (!given && !lora::threadEnvironmentError().empty())
      throw lora::Error(lora::threadEnvironmentError() + " (or pass --threads)");
  });
  lora::cli::addRankReplay(app);
  lora::cli::addInspect(app);
  lora::cli::addMerge(app);
  lora::cli::addResize(app);
  lora::cli::addConvertPissa(app);
  lora::cli::addConvert(app);
  lora::cli::addRecommend(app);
  lora::cli::addCapacity(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "lora: error: {} (see lora --help)\n", oneLine(e.what()));
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lora: error: {}\n", oneLine(e.what()));
    return 1;
  } catch (...) {
    fmt::print(stderr, "lora: error: unexpected failure\n");
    return 1;
  }
  return 0;
}
