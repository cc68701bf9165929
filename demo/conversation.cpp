#include "demo/conversation.h"

#include <algorithm>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/utf8.h"

namespace kuiper::demo {
namespace {

// Index of the first (user, assistant) pair: after a leading system message.
size_t first_pair(const std::vector<ChatMessage>& messages) {
  return !messages.empty() && messages[0].role == "system" ? 1 : 0;
}

// Complete pairs in `next`, which ends with the new user message.
int pairs_before_last(const std::vector<ChatMessage>& next) {
  return int((next.size() - 1 - first_pair(next)) / 2);
}

std::vector<ChatMessage> without_oldest_pairs(std::vector<ChatMessage> messages, int pairs) {
  const auto first = messages.begin() + ptrdiff_t(first_pair(messages));
  messages.erase(first, first + 2 * pairs);
  return messages;
}

}  // namespace

Conversation::Conversation(Session& session, ChatTemplate chat_template,
                           const SamplerOptions& sampler, int max_reply_tokens)
    : tokenizer_(*session.tokenizer),
      template_(chat_template),
      generator_(*session.model, *session.tokenizer, sampler),
      context_(session.model->context()),
      max_reply_(max_reply_tokens),
      // Half the context at most, so that a long --steps does not leave room for no history.
      reply_room_(std::min(max_reply_tokens, session.model->context() / 2)),
      add_bos_(session.model->config().add_bos && session.model->config().bos_id >= 0) {}

void Conversation::reset(std::optional<std::string> system) {
  messages_.clear();
  if (system) messages_.push_back({"system", std::move(*system)});
  unfed_.reset();
}

bool Conversation::leaves_reply_room(const Plan& p) const {
  return p.prompt_tokens() + reply_room_ <= context_;
}

Conversation::Plan Conversation::plan(std::string_view user) const {
  if (const auto bad = find_invalid_utf8(user))
    fail("the message is not valid UTF-8 (byte ", *bad, ")");
  std::vector<ChatMessage> next = messages_;
  next.push_back({"user", std::string(user)});
  if (auto p = continue_in_cache(next)) return std::move(*p);
  // Drop as few of the oldest pairs as leaves room for a reply; with all of them dropped, the turn
  // goes ahead as long as its prompt fits at all.
  const int pairs = pairs_before_last(next);
  for (int drop = 0;; ++drop) {
    Plan p = render_afresh(without_oldest_pairs(next, drop), drop);
    if (drop == pairs || leaves_reply_room(p)) return p;
  }
}

std::optional<Conversation::Plan> Conversation::continue_in_cache(
    std::vector<ChatMessage> next) const {
  if (messages_.empty() || messages_.back().role != "assistant") return std::nullopt;
  Plan p;
  p.keep = int32_t(cached_.size());
  p.context = context_;
  if (unfed_) p.prefill.push_back(*unfed_);
  // The end-of-turn token is written as text, so a reply that stopped at another stop id (Qwen's
  // <|endoftext|>) or none continues as the template spells a finished reply.
  RenderedChat rendered = template_.render_after_reply_with_contents(next, next.size() - 1);
  rendered.prepend(template_.end_of_turn());
  const std::vector<int32_t> ids = rendered.encode(tokenizer_, false);
  p.prefill.insert(p.prefill.end(), ids.begin(), ids.end());
  p.messages = std::move(next);
  if (!leaves_reply_room(p)) return std::nullopt;
  return p;
}

Conversation::Plan Conversation::render_afresh(std::vector<ChatMessage> next,
                                               int dropped_pairs) const {
  const std::vector<int32_t> ids = template_.render_with_contents(next, 0, true).encode(tokenizer_, add_bos_);
  KUIPER_CHECK(!ids.empty(), "the ", template_.name(), " chat template rendered no tokens");
  const auto [cached_end, ids_end] = std::ranges::mismatch(cached_, ids);
  // At least one token is fed: its logits give the reply's first token.
  const int32_t keep = int32_t(std::min(ids_end - ids.begin(), ptrdiff_t(ids.size()) - 1));
  return Plan{.messages = std::move(next),
              .keep = keep,
              .prefill = {ids.begin() + keep, ids.end()},
              .dropped_pairs = dropped_pairs,
              .context = context_};
}

Conversation::Turn Conversation::reply(Plan plan,
                                       const std::function<void(std::string_view)>& on_text,
                                       const std::atomic<bool>* interrupt) {
  KUIPER_CHECK(!plan.too_long(), "the turn needs ", plan.prompt_tokens(),
               " tokens but the context holds ", context_);
  generator_.rewind(plan.keep);
  cached_.resize(size_t(plan.keep));
  Turn t;
  t.result = generator_.generate(plan.prefill, max_reply_, on_text, interrupt);
  const std::span<const int32_t> ids = t.result.ids;
  cached_.insert(cached_.end(), plan.prefill.begin(), plan.prefill.end());
  if (!ids.empty()) cached_.insert(cached_.end(), ids.begin(), ids.end() - 1);  // all but the last
  const bool ended = t.result.stop == Generator::Stop::kEos;
  const std::span<const int32_t> content = ended ? ids.first(ids.size() - 1) : ids;
  unfed_ = ended || ids.empty() ? std::nullopt : std::optional(ids.back());
  // A reply cut off inside a character would make the next rendering invalid UTF-8.
  t.reply = sanitize_utf8(tokenizer_.decode(content));
  messages_ = std::move(plan.messages);
  messages_.push_back({"assistant", t.reply});
  KUIPER_CHECK(int32_t(cached_.size()) == generator_.position(), "chat cache bookkeeping is off: ",
               cached_.size(), " tokens for position ", generator_.position());
  return t;
}

}  // namespace kuiper::demo
