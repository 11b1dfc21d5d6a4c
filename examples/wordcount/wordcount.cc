// examples/wordcount/wordcount.cc: a word count as a graph of groups, with
// the public API only.
//
//   lines -> tokenize -> by_key(count) -> top
//                  \--- 'bad' -> errors
//
// The source sends each line of the text (built in, or --file PATH). The
// tokenizers split a line into lower-case words (runs of letters) and send
// each word on; a line holding a control character (other than a tab) does
// not parse and goes to the tokenizers' "bad" output instead. The counters are
// a by_key group: every occurrence of a word reaches the same counter, which
// sends its totals to the sink at the end. The sink checks that no word came
// from two counters and puts the top words to the main process, which prints
// them; the error sink reports each bad line. Every actor is a process.
//
//   bazel run //examples/wordcount -- --help
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bazel/cli.h"
#include "relay/relay.h"

namespace {

// ---- Command line -----------------------------------------------------------

struct Options {
  std::optional<std::string> file;
  std::size_t tokenizers = 2;
  std::size_t counters = 3;
  std::size_t top = 10;
};

// --help, --version and bad usage (exit status 2) as every relay program has
// them (bazel/cli.h, on CLI11).
Options parse_args(int argc, char** argv) {
  Options o;
  CLI::App app(
      "Counts the words of a text with a graph of actors, each in its own process:\n"
      "lines -> tokenizers -> counters (by key: each word at one counter) -> top,\n"
      "and lines that do not parse (a control character other than tab) go to the\n"
      "tokenizers' \"bad\" output, to an error sink. Prints the most frequent words,\n"
      "most frequent first (ties in alphabetical order), then the bad lines.\n"
      "Exit status: 0 done, 1 the run failed, 2 bad usage.",
      "wordcount");
  relay::cli::setup(app);
  std::string file;
  app.add_option("--file", file, "Count the words of this file (default: a built-in text)");
  app.add_option("--tokenizers", o.tokenizers, "Tokenizer actors")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--counters", o.counters, "Counter actors (a by_key group)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--top", o.top, "How many words to print")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  const int status = relay::cli::parse(app, argc, argv, [&] {
    if (app.count("--file") > 0 && file.empty()) {
      throw CLI::ValidationError("--file", "needs a path");
    }
  });
  if (status >= 0) std::exit(status);
  if (!file.empty()) {
    // `bazel run` runs the program in its runfiles; a relative path means the
    // directory it was called from.
    const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
    o.file = dir && file[0] != '/' ? std::string(dir) + "/" + file : file;
  }
  return o;
}

// ---- The text ---------------------------------------------------------------

// Lines 4 and 9 hold a control character: they go to the error sink.
constexpr std::string_view kBuiltInText =
    "The quick brown fox jumps over the lazy dog.\n"
    "The dog sleeps; the fox runs, and the fox is quick.\n"
    "A lazy dog and a quick fox: the old story of the fox and the dog.\n"
    "This line rings a bell\a and does not parse.\n"
    "Over the hill the brown fox runs to the river.\n"
    "The river runs over stones, and the dog follows the fox.\n"
    "\n"
    "Is the dog lazy? Is the fox quick? The story does not say.\n"
    "An escape\x1b[0m sequence is not a word either.\n"
    "At night the fox sleeps, and the dog dreams of the fox.\n";

std::vector<std::string> read_lines(const Options& o) {
  std::vector<std::string> lines;
  auto add = [&](std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
    lines.push_back(std::move(line));
  };
  if (!o.file) {
    std::string_view text = kBuiltInText;
    while (!text.empty()) {
      const std::size_t nl = text.find('\n');
      add(std::string(text.substr(0, nl)));
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    }
    return lines;
  }
  std::ifstream in(*o.file);
  if (!in) throw std::runtime_error("cannot read '" + *o.file + "'");
  for (std::string line; std::getline(in, line);) add(std::move(line));
  return lines;
}

// ---- The actors -------------------------------------------------------------

// Sends (line number, line) for each line, numbered from 1.
class Lines : public relay::Actor {
 public:
  explicit Lines(std::vector<std::string> lines) : lines_(std::move(lines)) {}
  void loop() override {
    for (std::size_t i = 0; i < lines_.size(); ++i) send(static_cast<long long>(i + 1), lines_[i]);
  }

 private:
  std::vector<std::string> lines_;
};

// Why a line does not parse, or nothing if it does.
std::optional<std::string> parse_error(const std::string& line) {
  for (unsigned char c : line) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char text[64];
      std::snprintf(text, sizeof text, "control character 0x%02x", c);
      return std::string(text);
    }
  }
  return std::nullopt;
}

// Sends each word of a line (lower case, runs of ASCII letters) to the
// default output, or (line number, reason) to "bad".
class Tokenizer : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    const auto [number, line] = m.as<long long, std::string>();
    if (const std::optional<std::string> why = parse_error(line)) {
      send_to("bad", number, *why);
      return;
    }
    std::string word;
    for (const char c : line + " ") {
      if (std::isalpha(static_cast<unsigned char>(c))) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else if (!word.empty()) {
        send(word);
        word.clear();
      }
    }
  }
};

// Counts the words its key brings it; sends (word, count, its name) for each
// at the end.
class Counter : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { ++counts_[m.get<std::string>(0)]; }
  void shutdown() override {
    for (const auto& [word, count] : counts_) send(word, count, name());
  }

 private:
  std::map<std::string, long long> counts_;
};

// Gathers the counters' totals and puts ("word", word, count) for the top K
// words, then ("total", words, distinct words), to the main process's queue.
class Top : public relay::Actor {
 public:
  Top(relay::Queue& out, std::size_t k) : out_(out), k_(k) {}
  void recv(const relay::Message& m) override {
    const auto [word, count, counter] = m.as<std::string, long long, std::string>();
    const auto [at, fresh] = totals_.emplace(word, std::make_pair(count, counter));
    if (!fresh) {
      // by_key sends every occurrence of a word to one counter.
      throw std::logic_error("the word '" + word + "' was counted at " + at->second.second +
                             " and at " + counter);
    }
  }
  void shutdown() override {
    std::vector<std::pair<long long, std::string>> ranked;
    long long words = 0;
    for (const auto& [word, total] : totals_) {
      ranked.emplace_back(-total.first, word);
      words += total.first;
    }
    std::sort(ranked.begin(), ranked.end());
    for (std::size_t i = 0; i < ranked.size() && i < k_; ++i) {
      out_.put(std::string("word"), ranked[i].second, -ranked[i].first);
    }
    out_.put(std::string("total"), words, static_cast<long long>(totals_.size()));
  }

 private:
  relay::Queue& out_;
  std::size_t k_;
  std::map<std::string, std::pair<long long, std::string>> totals_;
};

// Puts ("bad", line number, reason) for each line that did not parse.
class Errors : public relay::Actor {
 public:
  explicit Errors(relay::Queue& out) : out_(out) {}
  void recv(const relay::Message& m) override {
    const auto [number, why] = m.as<long long, std::string>();
    out_.put(std::string("bad"), number, why);
  }

 private:
  relay::Queue& out_;
};

template <class T>
std::vector<std::unique_ptr<T>> make(std::size_t n) {
  std::vector<std::unique_ptr<T>> v;
  for (std::size_t i = 0; i < n; ++i) v.push_back(std::make_unique<T>());
  return v;
}

int run(const Options& o) {
  const std::vector<std::string> text = read_lines(o);
  relay::Queue out;
  Lines lines(text);
  auto tokenizers = make<Tokenizer>(o.tokenizers);
  auto counters = make<Counter>(o.counters);
  Top top(out, o.top);
  Errors errors(out);

  relay::Relay relay(100, "wordcount");
  relay.connect(relay::group("lines", lines), relay::group("tokenize", tokenizers),
                relay::by_key(relay::group("count", counters)), relay::group("top", top));
  relay.connect(relay::output("tokenize", "bad"), relay::group("errors", errors));
  relay.start();  // returns once every actor ended well; else throws

  // Everything the sinks put is there once start() returned.
  std::vector<std::pair<std::string, long long>> ranked;
  std::vector<std::pair<long long, std::string>> bad;
  long long words = 0, distinct = 0;
  while (auto m = out.get(std::chrono::seconds(1))) {
    const std::string tag = m->get<std::string>(0);
    if (tag == "word") {
      ranked.emplace_back(m->get<std::string>(1), m->get<long long>(2));
    } else if (tag == "total") {
      words = m->get<long long>(1);
      distinct = m->get<long long>(2);
    } else {
      bad.emplace_back(m->get<long long>(1), m->get<std::string>(2));
    }
  }
  std::sort(bad.begin(), bad.end());
  std::printf("wordcount: %zu lines, %lld words, %lld distinct, %zu bad lines\n", text.size(),
              words, distinct, bad.size());
  for (const auto& [word, count] : ranked) std::printf("%7lld %s\n", count, word.c_str());
  for (const auto& [number, why] : bad) std::printf("bad line %lld: %s\n", number, why.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    relay::init(argc, argv);  // relay's own flags (--relay-worker ...) first
  } catch (const std::invalid_argument& e) {
    std::fputs(relay::cli::usage_text("wordcount", e.what()).c_str(), stderr);
    return relay::cli::kUsageStatus;
  }
  const Options options = parse_args(argc, argv);
  try {
    return run(options);
  } catch (const relay::Interrupted&) {
    throw;  // ends the process as the signal would (exit status 130/143)
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wordcount: %s\n", e.what());
    return 1;
  }
}
