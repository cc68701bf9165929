#pragma once
// Chat templates: a conversation -> the prompt text a model family was fine-tuned on.
//
// The text spells special tokens out ("<|im_start|>", "<|eot_id|>", "<s>", "</s>");
// Tokenizer::encode turns them into their ids, but only those the template wrote: the messages'
// contents are plain text, so a user who writes "<|im_end|>" cannot end a turn. Prompt ids are
// therefore
//   tmpl.render_with_contents(messages, 0, true).encode(tokenizer, config.add_bos)
// (for messages without special-token strings, tokenizer.encode(tmpl.render(messages, true), ...)).
// add_bos only matters for Zephyr (TinyLlama-Chat): its template writes no BOS, and
// apply_chat_template(tokenize=True) adds none, but the model card's usage (a pipeline on the
// rendered text) does. Llama 2 and Llama 3 texts already start with BOS, which Tokenizer::encode
// does not repeat; Qwen has no BOS.
//
// Incremental prefill in a chat loop: after a turn, the KV cache must hold the prompt, the reply
// tokens the model generated, and the end-of-turn token it stopped with (sampled but not yet
// forwarded: the loop forwards it, e.g. as the first token of the next prefill). For the next
// turn, append {"assistant", reply text} and {"user", input} to `messages` and prefill
//   tmpl.render_after_reply_with_contents(messages, messages.size() - 1).encode(tokenizer, false)
// If the reply was cut off before an end-of-turn token, prefill end_of_turn() + that text.
// The split always directly follows a special token, which no merge crosses, so these ids are
// the tail of the ids of a full re-render. The reply stays in the cache as generated, even where a
// re-render would differ: Llama 3 trims the reply, Meta's Llama 2 format adds a space token before
// the reply's EOS, and a tokenizer may split the reply's text differently from the model.
// When the context is full, drop the oldest (user, assistant) pairs after any system message and
// prefill tokenizer.encode(render(remaining, true), add_bos) into an empty cache.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatTemplateKind {
  kLlama2,  // Meta's Llama 2 chat format: <s>[INST] <<SYS>>...<</SYS>> user [/INST] reply </s>
  kZephyr,  // TinyLlama-Chat / Zephyr: <|user|>\n...</s>\n<|assistant|>\n
  kLlama3,  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>
  kChatML,  // Qwen2.5: <|im_start|>user\n...<|im_end|>\n, with Qwen's default system message
};

// A rendering and where the messages' contents lie in it.
struct RenderedChat {
  std::string text;
  std::vector<TextRange> contents;  // in order

  // The ids of text, with special tokens only where the template wrote them.
  std::vector<int32_t> encode(const Tokenizer& tokenizer, bool add_bos) const {
    return tokenizer.encode(text, add_bos, contents);
  }
  // Puts a marker of the template (a special token) in front.
  void prepend(std::string_view marker);
};

struct ChatTemplateSpec;  // the data that makes up one template (chat_template.cpp)

class ChatTemplate {
 public:
  explicit ChatTemplate(ChatTemplateKind kind);

  ChatTemplateKind kind() const;
  // "llama2", "zephyr", "llama3" or "chatml", as in the model header and --template.
  std::string_view name() const;

  // The whole conversation as Hugging Face's apply_chat_template(tokenize=False) renders it with
  // the model's own template. For Llama 2, the text that encodes to Meta's chat_completion ids.
  // With add_generation_prompt, the text ends with the header of an assistant reply.
  // Throws kuiper::Error for an empty conversation or an unknown role. For Llama 2, the turns must
  // be an optional system message followed by user/assistant turns that alternate, starting with
  // user, as Meta requires.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // The part of render(messages, add_generation_prompt) written for messages [first, size).
  // For 0 < first < size: render(messages.first(first), false) + render_from(messages, first, g)
  // == render(messages, g). For Llama 2, a leading system message belongs to the first user turn,
  // so render(messages.first(1)) throws there.
  std::string render_from(std::span<const ChatMessage> messages, size_t first,
                          bool add_generation_prompt) const;
  // render_from() with where each message's content went, to encode.
  RenderedChat render_with_contents(std::span<const ChatMessage> messages, size_t first,
                                    bool add_generation_prompt) const;

  // What to prefill after an assistant reply (messages[first - 1]) whose tokens are in the cache,
  // up to and including its end-of-turn token: the rest of that reply's rendering (ChatML: "\n",
  // Zephyr: "\n"), then messages [first, size), then the generation prompt.
  std::string render_after_reply(std::span<const ChatMessage> messages, size_t first) const;
  RenderedChat render_after_reply_with_contents(std::span<const ChatMessage> messages,
                                                size_t first) const;

  // The special token that ends a reply in this format: "<|im_end|>", "<|eot_id|>" or "</s>".
  // Stop generation on every eos id of the model header. This is the token to prefill when a
  // reply was cut off before one.
  std::string_view end_of_turn() const;

 private:
  const ChatTemplateSpec* spec_ = nullptr;
};

// The template named `name`: the model header's "chat_template" or --template. Throws
// kuiper::Error for an empty or unknown name, listing the known ones.
ChatTemplate chat_template_from_name(std::string_view name);

// The known template names, for help texts.
std::span<const std::string_view> chat_template_names();

}  // namespace kuiper
