#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "demo/generator.h"
#include "demo/session.h"
#include "kuiper/tokenizer/chat_template.h"

namespace kuiper::demo {

// A conversation with a chat model whose KV cache lives on across turns.
//
// Between turns the cache holds cached_ids(): the rendering of messages() with each reply's tokens
// as the model generated them (a re-render could tokenize a reply differently), except the last
// reply's final generated token, which the Generator sampled but never fed. So the next turn
// prefills only what is new: that token (or, after an end-of-turn stop, the template's
// end-of-turn token) and the rendering of the new user message plus the reply header.
//
// When a turn would not leave room for a reply, the oldest (user, assistant) pairs after any
// system message are dropped and what remains is rendered afresh. The cache keeps the prefix of
// tokens it shares with the new rendering (usually the system message); the rest is prefilled.
class Conversation {
 public:
  // max_reply_tokens: the most tokens one reply may have (--steps).
  Conversation(Session& session, ChatTemplate chat_template, const SamplerOptions& sampler,
               int max_reply_tokens);

  // The next turn, planned: which messages it renders and what to prefill where.
  struct Plan {
    std::vector<ChatMessage> messages;  // after dropping old pairs, ending with the user message
    int32_t keep = 0;                   // cache positions that stay
    std::vector<int32_t> prefill;       // fed at position `keep`
    int dropped_pairs = 0;
    int context = 0;

    int prompt_tokens() const { return keep + int(prefill.size()); }
    // Even alone (system + user message) the turn is longer than the context: refuse it.
    bool too_long() const { return prompt_tokens() > context; }
  };
  struct Turn {
    Generator::Result result;  // the reply's ids (with the stop id), stop reason, stats
    std::string reply;         // its text, without the end-of-turn token
  };

  // Plans a turn that says `user`. Throws kuiper::Error for text that is not valid UTF-8.
  Plan plan(std::string_view user) const;
  // Runs a plan made by plan() on the conversation as it still is: prefills, then generates the
  // reply, calling on_text with each complete UTF-8 piece, until an end-of-turn token, the reply
  // limit, the end of the context, or *interrupt.
  Turn reply(Plan plan, const std::function<void(std::string_view)>& on_text,
             const std::atomic<bool>* interrupt);

  // Starts a new conversation with `system` as the system message (nullopt: none, so the
  // template's default where it has one). The cache stays: the next turn reuses its common prefix.
  void reset(std::optional<std::string> system);

  const std::vector<ChatMessage>& messages() const { return messages_; }
  const std::vector<int32_t>& cached_ids() const { return cached_; }
  int context() const { return context_; }

 private:
  std::optional<Plan> continue_in_cache(std::vector<ChatMessage> next) const;
  Plan render_afresh(std::vector<ChatMessage> next, int dropped_pairs) const;
  // Leaves room for a reply of up to reply_room_ tokens.
  bool leaves_reply_room(const Plan& p) const;

  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  Generator generator_;
  int context_;
  int max_reply_;
  int reply_room_;  // positions a prompt must leave free, or older turns are dropped
  bool add_bos_;
  std::vector<ChatMessage> messages_;  // system?, then (user, assistant) pairs
  std::vector<int32_t> cached_;        // what the KV cache holds, position by position
  // The last reply's final generated token when it is part of the reply (a reply cut off before
  // its end-of-turn token): the next turn feeds it first.
  std::optional<int32_t> unfed_;
};

}  // namespace kuiper::demo
