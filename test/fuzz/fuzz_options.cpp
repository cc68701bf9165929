// llama_infer's command line: the input is argv, its arguments separated by 0 bytes.
#include <vector>

#include "demo/options.h"
#include "test/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  fuzz::InputReader input({data, size});
  std::vector<std::string> words{"llama_infer"};
  while (!input.empty()) words.push_back(input.text_until(0));
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  fuzz::refusals_allowed([&] { demo::parse_options(argv); });
  return 0;
}
