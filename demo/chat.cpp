// Placeholder until the chat loop lands (issue 5).
#include "demo/chat.h"

namespace kuiper::demo {

int chat(const Options&, Session&) { fail("--chat is not implemented yet"); }

}  // namespace kuiper::demo
