// lora_doc_tests DOC: runs the C++ blocks of the document DOC (a path as registered, e.g.
// docs/training.md); see doc_runner.hpp.
#include "docs/doc_runner.hpp"

#include <map>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace lora::doctest {

std::map<std::string, std::vector<BlockEntry>>& registry() {
  static std::map<std::string, std::vector<BlockEntry>> r;
  return r;
}

Registered::Registered(const char* doc, const BlockEntry* blocks, std::size_t count) {
  registry()[doc].assign(blocks, blocks + count);
}

namespace {

namespace fs = std::filesystem;

std::vector<std::string> tokens(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

// A number with an optional trailing %, or nothing.
bool number(std::string t, double& value) {
  while (!t.empty() && (t.back() == '%' || t.back() == ',' || t.back() == ')')) t.pop_back();
  if (t.empty()) return false;
  char* end = nullptr;
  value = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}

// Token by token; numbers to a relative 1e-6 (and 1e-12 absolute), the rest exactly.
bool sameOutput(const std::string& got, const std::string& want, std::string& why) {
  const auto a = tokens(got), b = tokens(want);
  for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size() || i >= b.size()) {
      why = "printed " + std::to_string(a.size()) + " words, the document shows " +
            std::to_string(b.size());
      return false;
    }
    double x = 0, y = 0;
    if (number(a[i], x) && number(b[i], y)) {
      if (std::abs(x - y) <= 1e-6 * std::max(std::abs(x), std::abs(y)) + 1e-12) continue;
    } else if (a[i] == b[i]) {
      continue;
    }
    why = "word " + std::to_string(i + 1) + ": printed '" + a[i] + "', the document shows '" +
          b[i] + "'";
    return false;
  }
  return true;
}

}  // namespace
}  // namespace lora::doctest

#if defined(LORA_CLI)
// ---------------------------------------------------------------------------------------------
// `lora_doc_tests --commands DOC`: the shell sessions of a document. Inside fenced blocks, a line
// `$ COMMAND` is a command and the lines after it (up to the next `$` line) what it prints, with
// `(exit status N)` for a non-zero status and `...` for lines left out; in ```sh blocks a line
// `./build/bin/lora ...` is a command whose output is not shown. `lora` runs the tool, `cat`
// runs as is; other commands (python3 ...) are not run. All run in order in one scratch folder
// where `set_a` is the fixtures folder (LORA_PEFT_FIXTURES) and `data` the repository's. Markers
// before a block: `<!-- doc-test shell CMD -->` runs CMD first (with $LORA, $LORA_DEMO and
// $LORA_SOURCE_DIR set), `<!-- doc-test vary KEY... -->` lets the value after `"KEY":` or
// `KEY` differ, `<!-- doc-test status-only: WHY -->` checks the exit status alone. Output is
// compared word by word: integers and other words exactly, numbers with a decimal point or an
// exponent to one unit of their last digit shown or 1e-9 relative (the last digits of
// floating-point output may differ between machines). The outputs of a block that names `set_a` (or
// whose setup does) are compared only when the fixtures folder is set_a (other sets have other
// shapes); with another set such commands must only end normally (status 0, 1 or 2, no crash).

namespace lora::doctest {
namespace {

struct Command {
  int line = 0;
  std::string text;
  std::vector<std::string> expected;
  int status = 0;
  std::vector<std::string> vary;
  bool usesFixtures = false;
};

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// Drops a trailing `# comment` (outside quotes).
std::string withoutComment(const std::string& s) {
  bool single = false, dbl = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\'' && !dbl) single = !single;
    if (s[i] == '"' && !single) dbl = !dbl;
    if (s[i] == '#' && !single && !dbl && (i == 0 || s[i - 1] == ' '))
      return trimmed(s.substr(0, i));
  }
  return trimmed(s);
}

// The unit of the last digit of a decimal number as written ("2.036" -> 0.001), 0 for an integer.
double lastDigit(const std::string& t) {
  const auto dot = t.find('.');
  const auto e = t.find_first_of("eE");
  if (dot == std::string::npos && e == std::string::npos) return 0;
  const std::size_t end = e == std::string::npos ? t.size() : e;
  int digits = dot == std::string::npos ? 0 : static_cast<int>(end - dot - 1);
  int exponent = e == std::string::npos ? 0 : std::atoi(t.c_str() + e + 1);
  return std::pow(10.0, exponent - digits);
}

std::string strip(std::string t) {
  while (!t.empty() && std::string(",%)]}\"").find(t.back()) != std::string::npos) t.pop_back();
  while (!t.empty() && std::string("([{\"").find(t.front()) != std::string::npos) t.erase(0, 1);
  return t;
}

bool sameWord(const std::string& got, const std::string& want) {
  if (got == want) return true;
  const std::string a = strip(got), b = strip(want);
  if (a.empty() || b.empty()) return false;
  char* ea = nullptr;
  char* eb = nullptr;
  const double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  if (ea != a.c_str() + a.size() || eb != b.c_str() + b.size()) return false;
  const double unit = lastDigit(b);
  if (unit == 0) return false;  // integers exactly
  return std::abs(x - y) <= std::max(unit * 1.000001, 1e-9 * std::abs(y));
}

bool sameLine(const std::string& got, const std::string& want,
              const std::vector<std::string>& vary) {
  const auto a = tokens(got), b = tokens(want);
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (sameWord(a[i], b[i])) continue;
    bool varies = false;
    if (i > 0)
      for (const auto& key : vary) varies = varies || strip(b[i - 1]).starts_with(key);
    if (!varies) return false;
  }
  return true;
}

// Expected lines against got lines; "..." matches any run of lines.
bool matches(const std::vector<std::string>& got, std::size_t g,
             const std::vector<std::string>& want, std::size_t w,
             const std::vector<std::string>& vary) {
  if (w == want.size()) return g == got.size();
  if (trimmed(want[w]) == "...") {
    for (std::size_t k = g; k <= got.size(); ++k)
      if (matches(got, k, want, w + 1, vary)) return true;
    return false;
  }
  return g < got.size() && sameLine(got[g], want[w], vary) &&
         matches(got, g + 1, want, w + 1, vary);
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  while (!out.empty() && trimmed(out.back()).empty()) out.pop_back();
  return out;
}

std::string shellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int runShell(const std::string& command, const fs::path& dir, std::string& output) {
  const fs::path captured = dir / ".doc_test_output";
  const std::string cmd = "cd " + shellQuote(dir.string()) + " && {\n" + trimmed(command) +
                          "\n} >" + shellQuote(captured.string()) + " 2>&1 </dev/null";
  const int raw = std::system(cmd.c_str());
  std::ifstream in(captured);
  std::stringstream text;
  text << in.rdbuf();
  output = text.str();
  fs::remove(captured);
  return raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

int runCommands(const std::string& doc) {
  const fs::path source = LORA_SOURCE_DIR;
  std::ifstream in(source / doc);
  if (!in) {
    std::cerr << "lora_doc_tests: cannot read " << (source / doc) << "\n";
    return 2;
  }
  const char* env = std::getenv("LORA_PEFT_FIXTURES");
  const fs::path fixtures =
      fs::absolute(env != nullptr ? fs::path(env) : source / "../shared/peft-fixtures/set_a");
  const bool setA = fixtures.filename() == "set_a";
  const fs::path dir =
      fs::temp_directory_path() / ("lora_doc_commands_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_directory_symlink(fixtures, dir / "set_a");
  fs::create_directory_symlink(source / "data", dir / "data");
  ::setenv("LORA", LORA_CLI, 1);
  ::setenv("LORA_DEMO", LORA_DEMO, 1);
  ::setenv("LORA_SOURCE_DIR", LORA_SOURCE_DIR, 1);

  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  int ran = 0, failed = 0, skipped = 0;
  std::string pendingShell;
  std::vector<std::string> pendingVary;
  bool pendingStatusOnly = false;
  const auto check = [&](Command& c) {
    const std::string where = doc + ":" + std::to_string(c.line);
    std::istringstream words(c.text);
    std::string program;
    words >> program;
    std::string command;
    if (program == "lora" || program == "./build/bin/lora" || program == "build/bin/lora") {
      command = shellQuote(LORA_CLI) + c.text.substr(program.size());
    } else if (program == "cat") {
      command = c.text;
    } else {
      std::cout << where << ": not run (not a lora command): " << c.text << "\n";
      ++skipped;
      return;
    }
    std::string output;
    const int status = runShell(command, dir, output);
    ++ran;
    const auto got = linesOf(output);
    // The expected "(exit status N)" line is not printed by the command.
    const bool compare = !c.expected.empty() && (setA || !c.usesFixtures);
    std::string problem;
    const bool otherFixtures = !setA && c.usesFixtures;
    if (otherFixtures && (status < 0 || status > 2)) {
      problem = "exit status " + std::to_string(status) + " (a crash?) on the fixtures " +
                fixtures.string();
    } else if (otherFixtures) {
      // Another fixture set: what it prints and whether it fails are its own.
    } else if (status != c.status) {
      problem = "exit status " + std::to_string(status) + ", the document shows " +
                std::to_string(c.status);
    } else if (compare && !matches(got, 0, c.expected, 0, c.vary)) {
      problem = "its output differs from the document's";
      for (std::size_t k = 0; k < std::min(got.size(), c.expected.size()); ++k) {
        if (trimmed(c.expected[k]) == "...") break;
        if (!sameLine(got[k], c.expected[k], c.vary)) {
          problem += " from line " + std::to_string(k + 1) + " on: printed '" + got[k] +
                     "', the document shows '" + c.expected[k] + "'";
          break;
        }
      }
    }
    if (problem.empty()) {
      std::cout << where << ": ok" << (compare ? "" : " (status only)") << ": " << c.text << "\n";
      return;
    }
    ++failed;
    std::cout << where << ": FAILED: " << c.text << ": " << problem << "\n--- printed:\n"
              << output << "--- the document:\n";
    for (const auto& l : c.expected) std::cout << l << "\n";
  };

  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string t = trimmed(lines[i]);
    if (t.starts_with("<!-- doc-test status-only")) {
      pendingStatusOnly = true;
      while (lines[i].find("-->") == std::string::npos && i + 1 < lines.size()) ++i;
      continue;
    }
    if (t.starts_with("<!-- doc-test shell") || t.starts_with("<!-- doc-test vary")) {
      std::string body = t;
      while (body.find("-->") == std::string::npos && ++i < lines.size()) body += "\n" + lines[i];
      body = body.substr(0, body.find("-->"));
      if (body.starts_with("<!-- doc-test shell")) {
        pendingShell += body.substr(19) + "\n";
      } else {
        std::istringstream keys(body.substr(18));
        for (std::string k; keys >> k;) pendingVary.push_back(strip(k));
      }
      continue;
    }
    if (!t.starts_with("```")) continue;
    const bool sh = trimmed(t.substr(3)) == "sh";
    const std::string setupText = pendingShell;
    if (!pendingShell.empty()) {
      std::string output;
      if (runShell(pendingShell, dir, output) != 0) {
        std::cout << doc << ":" << i + 1
                  << ": FAILED: the hidden setup failed: " << trimmed(pendingShell) << "\n"
                  << output;
        ++failed;
        ++ran;
      }
      pendingShell.clear();
    }
    std::vector<Command> commands;
    for (++i; i < lines.size() && !trimmed(lines[i]).starts_with("```"); ++i) {
      const std::string& l = lines[i];
      if (l.starts_with("$ ")) {
        commands.push_back(
            {static_cast<int>(i + 1), withoutComment(l.substr(2)), {}, 0, pendingVary});
      } else if (sh && (trimmed(l).starts_with("./build/bin/lora ") ||
                        trimmed(l).starts_with("build/bin/lora "))) {
        commands.push_back({static_cast<int>(i + 1), withoutComment(l), {}, 0, pendingVary});
      } else if (!commands.empty() && !sh) {
        int status = 0;
        if (std::sscanf(trimmed(l).c_str(), "(exit status %d)", &status) == 1) {
          commands.back().status = status;
        } else {
          commands.back().expected.push_back(l);
        }
      }
    }
    pendingVary.clear();
    bool usesFixtures = setupText.find("set_a") != std::string::npos;
    for (const Command& c : commands)
      usesFixtures = usesFixtures || c.text.find("set_a") != std::string::npos;
    for (Command& c : commands) {
      c.usesFixtures = usesFixtures;
      if (pendingStatusOnly) c.expected.clear();
      check(c);
    }
    pendingStatusOnly = false;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  std::cout << doc << ": " << ran - failed << " of " << ran << " commands as documented"
            << (skipped > 0 ? ", " + std::to_string(skipped) + " not lora commands" : "")
            << (setA ? "" : " (outputs naming set_a/ not compared: the fixtures are not set_a)")
            << "\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lora::doctest
#endif  // LORA_CLI

int main(int argc, char** argv) {
  using namespace lora::doctest;
#if defined(LORA_CLI)
  if (argc == 3 && std::string(argv[1]) == "--commands") return runCommands(argv[2]);
#endif
  if (argc != 2 || !registry().contains(argv[1])) {
    std::cerr << "usage: lora_doc_tests DOC, with DOC one of:";
    for (const auto& [doc, blocks] : registry()) std::cerr << " " << doc;
    std::cerr << "\n";
    return 2;
  }
  const std::string doc = argv[1];
  const fs::path root =
      fs::temp_directory_path() / ("lora_doc_tests_" + std::to_string(::getpid()));
  int failed = 0, ran = 0;
  for (const BlockEntry& b : registry()[doc]) {
    const std::string where = doc + ":" + std::to_string(b.line);
    if (b.run == nullptr) {
      std::cout << where << ": compiled (declarations)\n";
      continue;
    }
    const fs::path dir = root / std::to_string(b.line);
    fs::create_directories(dir);
    const fs::path previous = fs::current_path();
    fs::current_path(dir);
    // stdout into a file while the block runs.
    std::fflush(stdout);
    std::cout.flush();
    const int saved = ::dup(1);
    const fs::path captured = dir / "stdout.txt";
    std::FILE* sink = std::fopen(captured.c_str(), "w");
    ::dup2(::fileno(sink), 1);
    std::string error;
    try {
      b.run();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "an exception that is not a std::exception";
    }
    std::fflush(stdout);
    std::cout.flush();
    ::dup2(saved, 1);
    ::close(saved);
    std::fclose(sink);
    fs::current_path(previous);
    std::ifstream in(captured);
    std::stringstream text;
    text << in.rdbuf();
    ++ran;
    std::string why;
    if (!error.empty()) {
      std::cout << where << ": FAILED: threw: " << error << "\n";
      ++failed;
    } else if (b.expected != nullptr && !sameOutput(text.str(), b.expected, why)) {
      std::cout << where << ": FAILED: its output differs from the document's: " << why
                << "\n--- printed:\n"
                << text.str() << "--- the document:\n"
                << b.expected;
      ++failed;
    } else {
      std::cout << where << ": ok" << (b.expected != nullptr ? " (output as shown)" : "") << "\n";
    }
  }
  std::error_code ec;
  fs::remove_all(root, ec);
  std::cout << doc << ": " << ran - failed << " of " << ran << " blocks ran as documented\n";
  return failed == 0 ? 0 : 1;
}
