#include "kuiper/tokenizer/chat_template.h"

#include <algorithm>
#include <array>

#include "kuiper/base/error.h"

namespace kuiper {

struct RoleAffixes {
  std::string_view prefix;
  std::string_view suffix;
};

// Every template is the same loop over messages, parameterised by this data; the comments name
// where each template's peculiarities come from.
struct ChatTemplateSpec {
  ChatTemplateKind kind;
  std::string_view name;
  std::string_view bos = {};  // written before the first message
  // Rendered as a system message in front of a conversation that does not start with one.
  std::string_view default_system = {};
  RoleAffixes system = {}, user = {}, assistant = {};
  std::string_view generation_prompt = {};
  // The token the model ends its reply with; assistant.suffix contains it.
  std::string_view end_of_turn = {};
  // Python's str.strip() on each content: Jinja's `trim` filter, Meta's .strip().
  bool strip_content = false;
  // Non-empty: there is no system turn. A leading system message is wrapped in these and put in
  // front of the first user message's content (before stripping), and turns alternate
  // user/assistant (Meta's Llama 2 format).
  std::string_view merged_system_open = {}, merged_system_close = {};
};

namespace {

constexpr std::array<ChatTemplateSpec, 4> kSpecs{{
    // Meta's llama/generation.py chat_completion encodes each "[INST] {user} [/INST] {reply} " pair
    // with BOS and EOS, and the last user message as "[INST] {user} [/INST]" with BOS only. Since
    // "<s>" and "</s>" split the text into separately encoded pieces, this text encodes to the
    // same ids.
    {.kind = ChatTemplateKind::kLlama2,
     .name = "llama2",
     .user = {"<s>[INST] ", " [/INST]"},
     .assistant = {" ", " </s>"},
     .generation_prompt = "",
     .end_of_turn = "</s>",
     .strip_content = true,
     .merged_system_open = "<<SYS>>\n",
     .merged_system_close = "\n<</SYS>>\n\n"},
    // TinyLlama-1.1B-Chat's chat_template.jinja: every message ends with eos_token and the
    // newline after the {{ }} (Hugging Face renders with trim_blocks, which only eats newlines
    // after {% %} tags).
    {.kind = ChatTemplateKind::kZephyr,
     .name = "zephyr",
     .system = {"<|system|>\n", "</s>\n"},
     .user = {"<|user|>\n", "</s>\n"},
     .assistant = {"<|assistant|>\n", "</s>\n"},
     .generation_prompt = "<|assistant|>\n",
     .end_of_turn = "</s>"},
    // Meta-Llama-3-Instruct's template: bos_token before the first message, content `| trim`med.
    {.kind = ChatTemplateKind::kLlama3,
     .name = "llama3",
     .bos = "<|begin_of_text|>",
     .system = {"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"},
     .user = {"<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"},
     .assistant = {"<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
     .generation_prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n",
     .end_of_turn = "<|eot_id|>",
     .strip_content = true},
    // Qwen2.5-Instruct's template without tools: plain ChatML, plus a default system message.
    {.kind = ChatTemplateKind::kChatML,
     .name = "chatml",
     .default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
     .system = {"<|im_start|>system\n", "<|im_end|>\n"},
     .user = {"<|im_start|>user\n", "<|im_end|>\n"},
     .assistant = {"<|im_start|>assistant\n", "<|im_end|>\n"},
     .generation_prompt = "<|im_start|>assistant\n",
     .end_of_turn = "<|im_end|>"},
}};

constexpr auto kNames = [] {
  std::array<std::string_view, kSpecs.size()> names;
  for (size_t i = 0; i < kSpecs.size(); ++i) names[i] = kSpecs[i].name;
  return names;
}();

// The characters Python's str.isspace() accepts, UTF-8 encoded: what str.strip() removes.
constexpr std::array<std::string_view, 29> kPythonSpaces{
    "\t",     "\n",     "\v",     "\f",     "\r",     "\x1c",   "\x1d",   "\x1e",
    "\x1f",   " ",      "\u0085", "\u00a0", "\u1680", "\u2000", "\u2001", "\u2002",
    "\u2003", "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a",
    "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"};

// Matching whole encoded characters keeps this right for valid UTF-8: a multi-byte match at
// either end is a whole character, and ASCII bytes never occur inside one.
std::string_view python_strip(std::string_view s) {
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view space : kPythonSpaces) {
      if (s.starts_with(space)) s.remove_prefix(space.size()), changed = true;
      if (s.ends_with(space)) s.remove_suffix(space.size()), changed = true;
    }
  }
  return s;
}

const RoleAffixes& affixes_of(const ChatTemplateSpec& spec, const ChatMessage& m, size_t index) {
  if (m.role == "user") return spec.user;
  if (m.role == "assistant") return spec.assistant;
  if (m.role == "system") return spec.system;
  fail("chat message ", index, " has role '", m.role,
       "'; a chat template knows only 'system', 'user' and 'assistant'");
}

bool merges_system(const ChatTemplateSpec& spec) { return !spec.merged_system_open.empty(); }

void validate(const ChatTemplateSpec& spec, std::span<const ChatMessage> messages) {
  KUIPER_CHECK(!messages.empty(), "the ", spec.name, " chat template got an empty conversation");
  for (size_t i = 0; i < messages.size(); ++i) affixes_of(spec, messages[i], i);
  if (!merges_system(spec)) return;
  const size_t first_turn = messages[0].role == "system" ? 1 : 0;
  KUIPER_CHECK(first_turn < messages.size(), "the ", spec.name,
               " chat template needs a user message after the system message");
  for (size_t i = first_turn; i < messages.size(); ++i) {
    const std::string_view expected = (i - first_turn) % 2 == 0 ? "user" : "assistant";
    KUIPER_CHECK(messages[i].role == expected, "the ", spec.name,
                 " chat template needs an optional system message, then user and assistant "
                 "messages in turn starting with user; message ",
                 i, " is '", messages[i].role, "' where '", expected, "' belongs");
  }
}

// Appends `content` (a view into `whole`, whose message contents are `ranges`, relative to
// whole) to out, recording where those contents land.
void append_content(std::string_view whole, std::span<const TextRange> ranges,
                    std::string_view content, RenderedChat& out) {
  const size_t from = size_t(content.data() - whole.data()), to = from + content.size();
  for (const TextRange& r : ranges) {
    const size_t begin = std::max(r.begin, from), end = std::min(r.end, to);
    if (begin < end) out.contents.push_back({out.text.size() + begin - from, out.text.size() + end - from});
  }
  out.text += content;
}

// What render() writes for messages[i].
void append_message(const ChatTemplateSpec& spec, std::span<const ChatMessage> messages, size_t i,
                    RenderedChat& out) {
  const ChatMessage& m = messages[i];
  if (i == 0) {
    out.text += spec.bos;
    if (!spec.default_system.empty() && m.role != "system") {
      out.text += spec.system.prefix;
      out.text += spec.default_system;
      out.text += spec.system.suffix;
    }
  }
  std::string merged;
  std::string_view whole = m.content;
  std::vector<TextRange> contents{{0, whole.size()}};
  if (merges_system(spec)) {
    if (m.role == "system") return;  // validate() allows one only at 0; it goes into message 1
    if (i == 1 && messages[0].role == "system") {
      const std::string_view system = messages[0].content;
      merged = str_cat(spec.merged_system_open, system, spec.merged_system_close, m.content);
      const size_t system_at = spec.merged_system_open.size();
      const size_t user_at = system_at + system.size() + spec.merged_system_close.size();
      contents = {{system_at, system_at + system.size()}, {user_at, merged.size()}};
      whole = merged;
    }
  }
  const std::string_view content = spec.strip_content ? python_strip(whole) : whole;
  const RoleAffixes& affixes = affixes_of(spec, m, i);
  out.text += affixes.prefix;
  append_content(whole, contents, content, out);
  out.text += affixes.suffix;
}

}  // namespace

ChatTemplate::ChatTemplate(ChatTemplateKind kind) {
  const auto it = std::find_if(kSpecs.begin(), kSpecs.end(),
                               [kind](const ChatTemplateSpec& s) { return s.kind == kind; });
  KUIPER_CHECK(it != kSpecs.end(), "no chat template of kind ", static_cast<int>(kind));
  spec_ = &*it;
}

ChatTemplateKind ChatTemplate::kind() const { return spec_->kind; }
std::string_view ChatTemplate::name() const { return spec_->name; }
std::string_view ChatTemplate::end_of_turn() const { return spec_->end_of_turn; }

std::string ChatTemplate::render(std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  return render_from(messages, 0, add_generation_prompt);
}

std::string ChatTemplate::render_from(std::span<const ChatMessage> messages, size_t first,
                                      bool add_generation_prompt) const {
  return render_with_contents(messages, first, add_generation_prompt).text;
}

RenderedChat ChatTemplate::render_with_contents(std::span<const ChatMessage> messages, size_t first,
                                                bool add_generation_prompt) const {
  validate(*spec_, messages);
  KUIPER_CHECK(first <= messages.size(), "cannot render from message ", first, " of ",
               messages.size());
  RenderedChat out;
  for (size_t i = first; i < messages.size(); ++i) append_message(*spec_, messages, i, out);
  if (add_generation_prompt) out.text += spec_->generation_prompt;
  return out;
}

std::string ChatTemplate::render_after_reply(std::span<const ChatMessage> messages,
                                             size_t first) const {
  return render_after_reply_with_contents(messages, first).text;
}

RenderedChat ChatTemplate::render_after_reply_with_contents(std::span<const ChatMessage> messages,
                                                            size_t first) const {
  KUIPER_CHECK(first >= 1 && first <= messages.size() && messages[first - 1].role == "assistant",
               "render_after_reply(", first, "): the message before the new ones must be an ",
               "assistant reply");
  const std::string_view suffix = spec_->assistant.suffix;
  const size_t eot = suffix.find(spec_->end_of_turn);
  RenderedChat out = render_with_contents(messages, first, true);
  out.prepend(suffix.substr(eot + spec_->end_of_turn.size()));
  return out;
}

void RenderedChat::prepend(std::string_view marker) {
  text.insert(0, marker);
  for (TextRange& r : contents) r.begin += marker.size(), r.end += marker.size();
}

ChatTemplate chat_template_from_name(std::string_view name) {
  for (const ChatTemplateSpec& spec : kSpecs) {
    if (spec.name == name) return ChatTemplate(spec.kind);
  }
  std::string known;
  for (std::string_view n : kNames) known += str_cat(known.empty() ? "" : ", ", n);
  if (name.empty()) fail("no chat template is known for this model; choose one of: ", known);
  fail("unknown chat template '", name, "'; known templates: ", known);
}

std::span<const std::string_view> chat_template_names() { return kNames; }

}  // namespace kuiper
