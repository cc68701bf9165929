#include "demo/options.h"

#include <tuple>

#include "demo/command_line.h"

namespace kuiper::demo {

std::string usage(const std::string& program) {
  return "usage: " + program + R"( MODEL [TOKENIZER] [options]

Generates text with a Llama-family model (Llama 2/3, TinyLlama, Qwen2.5): a GGUF file, a file
converted by tools/export.py, or a llama2.c .bin. TOKENIZER is tokenizer.model or tokenizer.json;
without it the model file's own tokenizer is used (GGUF files and export.py's files carry one).

  -p, --prompt TEXT    prompt (default: empty, the model starts from BOS)
  -n, --steps N        generate at most N new tokens (default 256)
      --temp T         sampling temperature, 0 = greedy (default 0.8)
      --top-p P        nucleus sampling threshold, 1 = off (default 0.95)
      --top-k K        sample from the K most likely tokens, 0 = off (default 40)
      --seed S         random seed (default: from the clock)
      --device D       cpu or cuda (default cpu)
  -c, --ctx N          context length in tokens (default: the model's, at most 4096)
  -t, --threads N      CPU threads (default: all cores)
  -tp, --tensor-parallel N
                       split the model over N ranks (default 1): N GPUs with --device cuda
                       (NCCL), N threads on the CPU (each its share of every matrix; for
                       testing the split, not for speed)
      --no-mmap        read the weights into memory instead of mapping the file
      --tokenize       print the prompt's token ids and exit (--chat: each message's)
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
  OptionTable table;
  table.flags = {{"--tokenize", &o.tokenize_only}, {"--ids", &o.print_ids}, {"--chat", &o.chat},
                 {"--verbose", &o.verbose},        {"-h", &o.help},         {"--help", &o.help},
                 {"--no-mmap", &o.no_mmap}};
  // Options that take a value, by every spelling.
  auto& m = table.valued;
  const OptionSetter prompt = [&](auto, auto v) { o.prompt = v; };
  const OptionSetter steps = [&](auto opt, auto v) { o.steps = parse_number<int>(opt, v); };
  const OptionSetter ctx = [&](auto opt, auto v) { o.context = parse_number<int>(opt, v); };
  const OptionSetter threads = [&](auto opt, auto v) { o.threads = parse_number<int>(opt, v); };
  m["-p"] = m["--prompt"] = prompt;
  m["-n"] = m["--steps"] = steps;
  m["-c"] = m["--ctx"] = ctx;
  m["-t"] = m["--threads"] = threads;
  m["-tp"] = m["--tensor-parallel"] = [&](auto opt, auto v) {
    o.tensor_parallel = parse_number<int>(opt, v);
  };
  m["--temp"] = [&](auto opt, auto v) { o.sampler.temperature = parse_number<float>(opt, v); };
  m["--top-p"] = [&](auto opt, auto v) { o.sampler.top_p = parse_number<float>(opt, v); };
  m["--top-k"] = [&](auto opt, auto v) { o.sampler.top_k = parse_number<int>(opt, v); };
  m["--seed"] = [&](auto opt, auto v) {
    o.sampler.seed = parse_number<uint64_t>(opt, v);
    o.seed_given = true;
  };
  m["--device"] = [&](auto, auto v) { o.device = parse_device(v); };
  m["--system"] = [&](auto, auto v) { o.system = std::string(v); };
  m["--template"] = [&](auto, auto v) { o.chat_template = v; };
  const std::vector<std::string_view> positional = parse_command_line(args, table);
  if (o.help) return o;
  std::tie(o.model_path, o.tokenizer_path) = model_and_tokenizer(positional);
  KUIPER_CHECK(o.steps >= 0, "--steps must be >= 0, got ", o.steps);
  KUIPER_CHECK(o.context >= 0, "--ctx must be >= 0, got ", o.context);
  KUIPER_CHECK(o.threads >= 0, "--threads must be >= 0, got ", o.threads);
  KUIPER_CHECK(o.tensor_parallel >= 1, "--tensor-parallel must be >= 1, got ", o.tensor_parallel);
  Sampler{o.sampler};  // validates temperature, top-p and top-k now, before anything is loaded
  return o;
}

}  // namespace kuiper::demo
