#pragma once
// What the demo programs share on their command lines: flags and options with a value (given as
// `--name value` or `--name=value`), positional arguments, numbers and devices; and main()'s
// error handling.
#include <charconv>
#include <cstdio>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <string_view>
#include <variant>
#include <vector>

#include "kuiper/base/device.h"
#include "kuiper/base/error.h"

namespace kuiper::demo {

using OptionSetter = std::function<void(std::string_view option, std::string_view value)>;

// Every spelling of every option a program takes.
struct OptionTable {
  std::map<std::string_view, bool*> flags;
  std::map<std::string_view, OptionSetter> valued;
};

// Sets the flags and calls the setters for args[1..]; returns the positional arguments ("--"
// and "-" among them). Throws kuiper::Error for an unknown option or a missing value.
std::vector<std::string_view> parse_command_line(std::span<char* const> args,
                                                 const OptionTable& table);

// MODEL and TOKENIZER, the positional arguments of every demo program; TOKENIZER may be left out
// (then "": the model file's own tokenizer is used). Throws for another count.
std::pair<std::string, std::string> model_and_tokenizer(std::span<const std::string_view> positional);

// The whole of `text` as a number of type T; throws naming the option otherwise.
template <class T>
T parse_number(std::string_view option, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  KUIPER_CHECK(ec == std::errc() && end == text.data() + text.size(), "option ", option,
               " expects a number, got '", text, "'");
  return value;
}

// cpu or cuda; throws for anything else.
Device parse_device(std::string_view name);

// The options parse(args) gives (the Options type has a `help` flag), or the exit code when there
// is nothing to run: 2 after a bad argument ("PROGRAM: message" on stderr), 0 after printing
// usage(argv[0]) for --help.
template <class Parse, class Usage>
auto options_or_exit_code(const char* program, int argc, char** argv, Parse&& parse, Usage&& usage) {
  const std::span<char* const> args(argv, size_t(argc));
  using Options = decltype(parse(args));
  using Result = std::variant<Options, int>;
  try {
    Options o = parse(args);
    if (!o.help) return Result(std::move(o));
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return Result(2);
  }
  std::fputs(usage(argv[0]).c_str(), stdout);
  return Result(0);
}

// main() of a demo program: run(argc, argv), with every error that escapes it one line on
// stderr ("PROGRAM: error: ...") and exit code 1.
int guarded_main(const char* program, int argc, char** argv, int (*run)(int, char**));

}  // namespace kuiper::demo
