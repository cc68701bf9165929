#include "demo/options.h"

#include <charconv>
#include <functional>
#include <map>
#include <string_view>
#include <vector>

#include "kuiper/base/error.h"

namespace kuiper::demo {
namespace {

template <class T>
T parse_number(std::string_view option, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  KUIPER_CHECK(ec == std::errc() && end == text.data() + text.size(), "option ", option,
               " expects a number, got '", text, "'");
  return value;
}

}  // namespace

std::string usage(const std::string& program) {
  return "usage: " + program + R"( MODEL TOKENIZER [options]

Generates text with a Llama-family model (Llama 2/3, TinyLlama, Qwen2.5) converted by
tools/export.py (or a llama2.c .bin). TOKENIZER is tokenizer.model or tokenizer.json.

  -p, --prompt TEXT    prompt (default: empty, the model starts from BOS)
  -n, --steps N        generate at most N new tokens (default 256)
      --temp T         sampling temperature, 0 = greedy (default 0.8)
      --top-p P        nucleus sampling threshold, 1 = off (default 0.95)
      --top-k K        sample from the K most likely tokens, 0 = off (default 40)
      --seed S         random seed (default: from the clock)
      --device D       cpu or cuda (default cpu)
  -c, --ctx N          context length in tokens (default: the model's, at most 4096)
  -t, --threads N      CPU threads (default: all cores)
      --no-mmap        read the weights into memory instead of mapping the file
      --tokenize       print the prompt's token ids and exit
      --ids            print generated token ids instead of text
      --chat           interactive conversation (see README)
      --system TEXT    system message for --chat
      --template NAME  chat template: llama2, zephyr, llama3, chatml (default: from the model)
      --verbose        per-turn statistics in --chat
  -h, --help           this help
)";
}

Options parse_options(std::span<char* const> args) {
  Options o;
  // Options that take a value, by every spelling.
  using Setter = std::function<void(std::string_view option, std::string_view value)>;
  const std::map<std::string_view, Setter> valued = [&] {
    std::map<std::string_view, Setter> m;
    const Setter prompt = [&](auto, auto v) { o.prompt = v; };
    const Setter steps = [&](auto opt, auto v) { o.steps = parse_number<int>(opt, v); };
    const Setter ctx = [&](auto opt, auto v) { o.context = parse_number<int>(opt, v); };
    const Setter threads = [&](auto opt, auto v) { o.threads = parse_number<int>(opt, v); };
    m["-p"] = m["--prompt"] = prompt;
    m["-n"] = m["--steps"] = steps;
    m["-c"] = m["--ctx"] = ctx;
    m["-t"] = m["--threads"] = threads;
    m["--temp"] = [&](auto opt, auto v) { o.sampler.temperature = parse_number<float>(opt, v); };
    m["--top-p"] = [&](auto opt, auto v) { o.sampler.top_p = parse_number<float>(opt, v); };
    m["--top-k"] = [&](auto opt, auto v) { o.sampler.top_k = parse_number<int>(opt, v); };
    m["--seed"] = [&](auto opt, auto v) {
      o.sampler.seed = parse_number<uint64_t>(opt, v);
      o.seed_given = true;
    };
    m["--device"] = [&](auto, auto v) {
      const auto d = device_from_name(v);
      KUIPER_CHECK(d.has_value(), "unknown device '", v, "' (expected cpu or cuda)");
      o.device = *d;
    };
    m["--system"] = [&](auto, auto v) { o.system = std::string(v); };
    m["--template"] = [&](auto, auto v) { o.chat_template = v; };
    return m;
  }();
  const std::map<std::string_view, bool*> flags = {
      {"--tokenize", &o.tokenize_only}, {"--ids", &o.print_ids}, {"--chat", &o.chat},
      {"--verbose", &o.verbose},        {"-h", &o.help},         {"--help", &o.help},
      {"--no-mmap", &o.no_mmap}};

  std::vector<std::string_view> positional;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view arg = args[i];
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
    if (const auto flag = flags.find(name); flag != flags.end() && !value) {
      *flag->second = true;
    } else if (const auto setter = valued.find(name); setter != valued.end()) {
      if (!value) {
        KUIPER_CHECK(i + 1 < args.size(), "option ", name, " needs a value");
        value = args[++i];
      }
      setter->second(name, *value);
    } else {
      fail("unknown option '", arg, "' (see --help)");
    }
  }
  if (o.help) return o;
  KUIPER_CHECK(positional.size() == 2, "expected MODEL and TOKENIZER, got ", positional.size(),
               " positional argument", positional.size() == 1 ? "" : "s", " (see --help)");
  o.model_path = positional[0];
  o.tokenizer_path = positional[1];
  KUIPER_CHECK(o.steps >= 0, "--steps must be >= 0, got ", o.steps);
  KUIPER_CHECK(o.context >= 0, "--ctx must be >= 0, got ", o.context);
  KUIPER_CHECK(o.threads >= 0, "--threads must be >= 0, got ", o.threads);
  Sampler{o.sampler};  // validates temperature, top-p and top-k now, before anything is loaded
  return o;
}

}  // namespace kuiper::demo
