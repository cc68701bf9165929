#include "demo/command_line.h"

#include <glog/logging.h>

#include <cstdio>
#include <new>
#include <optional>

namespace kuiper::demo {

std::vector<std::string_view> parse_command_line(std::span<char* const> args,
                                                 const OptionTable& table) {
  std::vector<std::string_view> positional;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg.size() < 2 || arg[0] != '-' || arg == "--") {
      positional.push_back(arg);
      continue;
    }
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (const auto flag = table.flags.find(name); flag != table.flags.end() && !value) {
      *flag->second = true;
    } else if (const auto setter = table.valued.find(name); setter != table.valued.end()) {
      if (!value) {
        KUIPER_CHECK(i + 1 < args.size(), "option ", name, " needs a value");
        value = args[++i];
      }
      setter->second(name, *value);
    } else {
      fail("unknown option '", arg, "' (see --help)");
    }
  }
  return positional;
}

std::pair<std::string, std::string> model_and_tokenizer(std::span<const std::string_view> positional) {
  KUIPER_CHECK(positional.size() == 1 || positional.size() == 2, "expected MODEL [TOKENIZER], got ",
               positional.size(), " positional argument", positional.size() == 1 ? "" : "s", " (see --help)");
  return {std::string(positional[0]), positional.size() == 2 ? std::string(positional[1]) : std::string()};
}

Device parse_device(std::string_view name) {
  const auto d = device_from_name(name);
  KUIPER_CHECK(d.has_value(), "unknown device '", name, "' (expected cpu or cuda)");
  return *d;
}

int guarded_main(const char* program, int argc, char** argv, int (*run)(int, char**)) {
  google::InitGoogleLogging(argv[0]);
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of host memory\n", program);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  }
  return 1;
}

}  // namespace kuiper::demo
