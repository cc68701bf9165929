// Chat templates over arbitrary conversations: roles and contents are input bytes. A rendering
// must be refused with kuiper::Error or satisfy the identities chat_template.h promises.
#include <vector>

#include "kuiper/tokenizer/chat_template.h"
#include "test/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuiper;
  fuzz::InputReader input({data, size});
  const auto names = chat_template_names();
  const ChatTemplate tmpl = chat_template_from_name(names[input.byte() % names.size()]);
  const bool generation_prompt = input.byte() & 1;
  // Messages: a role byte (mostly a real role), then the content up to a 0 byte.
  std::vector<ChatMessage> messages;
  while (!input.empty()) {
    static const char* const kRoles[] = {"system", "user", "assistant"};
    const uint8_t r = input.byte();
    std::string role = r < 250 ? kRoles[r % 3] : input.text_until(0);
    messages.push_back({std::move(role), input.text_until(0)});
  }
  fuzz::refusals_allowed([&] {
    const std::string whole = tmpl.render(messages, generation_prompt);
    for (size_t first = 1; first < messages.size(); ++first) {
      fuzz::refusals_allowed([&] {
        const std::string head = tmpl.render(std::span(messages).first(first), false);
        if (head + tmpl.render_from(messages, first, generation_prompt) != whole) std::abort();
      });
      if (messages[first - 1].role == "assistant") tmpl.render_after_reply(messages, first);
    }
  });
  return 0;
}
