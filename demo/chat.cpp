#include "demo/chat.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "demo/conversation.h"
#include "kuiper/base/allocator.h"
#include "kuiper/base/error.h"
#include "kuiper/tokenizer/chat_template.h"

namespace kuiper::demo {
namespace {

// Set by SIGINT while a reply is being generated; the Generator polls it after each token.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT handler needs a lock-free flag");

void on_sigint(int) { g_interrupted.store(true); }

// While alive, Ctrl-C stops the reply instead of the program; the previous action comes back
// after it, so Ctrl-C at the prompt ends the program as usual.
class InterruptScope {
 public:
  InterruptScope() {
    g_interrupted.store(false);
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // a write to the terminal is not cut short
    sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptScope() { sigaction(SIGINT, &previous_, nullptr); }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction previous_ {};
};

void write(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// Writes replies to stdout in the format chat.h describes.
class ReplyWriter {
 public:
  ReplyWriter(bool terminal, bool ids) : escape_(!terminal), ids_(ids) {}

  void text(std::string_view piece) const {
    if (ids_ || piece.empty()) return;
    if (!escape_) return write(piece);
    std::string escaped;
    for (const char c : piece) {
      if (c == '\\') escaped += "\\\\";
      else if (c == '\n') escaped += "\\n";
      else if (c == '\r') escaped += "\\r";
      else escaped += c;
    }
    write(escaped);
  }
  // Ends a reply (ids: what was generated) or, with no ids, stands in for a refused one.
  void end(std::span<const int32_t> ids) const {
    std::string line;
    for (size_t i = 0; ids_ && i < ids.size(); ++i) line += str_cat(i ? " " : "", ids[i]);
    write(line + "\n");
  }

 private:
  bool escape_;
  bool ids_;
};

double per_second(int tokens, double seconds) { return seconds > 0 ? tokens / seconds : 0.0; }

void report_plan(const Conversation::Plan& plan) {
  if (plan.dropped_pairs == 0) return;
  std::fprintf(stderr,
               "kuiper: the context of %d tokens is full: dropped the oldest %d turn%s, "
               "prefilling %zu tokens again\n",
               plan.context, plan.dropped_pairs, plan.dropped_pairs == 1 ? "" : "s",
               plan.prefill.size());
}

void report_stop(const Conversation::Turn& t, const Conversation& conv, const Options& o) {
  const int n = t.result.stats.generated_tokens;
  switch (t.result.stop) {
    case Generator::Stop::kEos: return;
    case Generator::Stop::kLimit:
      std::fprintf(stderr, "kuiper: reply cut off at %d tokens (-n/--steps %d)\n", n, o.steps);
      return;
    case Generator::Stop::kContextFull:
      std::fprintf(stderr,
                   "kuiper: reply cut off at %d tokens: the context of %d tokens is full; the "
                   "next turn drops the oldest turns\n",
                   n, conv.context());
      return;
    case Generator::Stop::kInterrupted:
      std::fprintf(stderr, "kuiper: reply interrupted after %d tokens\n", n);
      return;
  }
}

// Resident memory of this process (/proc/self/statm), in MiB; 0 where it cannot be read.
double resident_mib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const bool ok = std::fscanf(f, "%lu %lu", &size, &resident) == 2;
  std::fclose(f);
  return ok ? double(resident) * double(sysconf(_SC_PAGESIZE)) / (1 << 20) : 0;
}

void report_stats(int turn, const Conversation::Turn& t, int32_t cached,
                  const Conversation& conv, Device device) {
  const Generator::Stats& s = t.result.stats;
  // The first reply token comes out of the prefill; the decode rate counts the rest.
  const int decoded = std::max(0, s.generated_tokens - 1);
  const std::string gpu =
      device == Device::kCPU ? "" : str_cat(", gpu ", device_bytes_reserved(device) >> 20, " MiB");
  std::fprintf(stderr,
               "kuiper: turn %d: prefill %d tokens (%d cached) in %.3f s (%.1f tokens/s); reply %d "
               "tokens, %.1f tokens/s; context %zu/%d; memory: resident %.1f MiB%s\n",
               turn, s.prefill_tokens, cached, s.prefill_seconds,
               per_second(s.prefill_tokens, s.prefill_seconds), s.generated_tokens,
               per_second(decoded, s.decode_seconds), conv.cached_ids().size(), conv.context(),
               resident_mib(), gpu.c_str());
}

// One user message: plan, say so when old turns go, generate, report.
void converse(Conversation& conv, std::string_view message, const ReplyWriter& out,
              const Options& o, int& turns) {
  Conversation::Plan plan;
  try {
    plan = conv.plan(message);
  } catch (const Error& e) {
    std::fprintf(stderr, "kuiper: %s; it was not sent\n", e.what());
    return out.end({});
  }
  if (o.tokenize_only) return out.end(plan.prefill);  // nothing cached, so keep == 0
  if (plan.too_long()) {
    std::fprintf(stderr,
                 "kuiper: this message needs %d tokens but the context holds %d (-c/--ctx); it "
                 "was not sent\n",
                 plan.prompt_tokens(), conv.context());
    return out.end({});
  }
  report_plan(plan);
  const int32_t cached = plan.keep;  // reply() consumes the plan
  Conversation::Turn t;
  {
    InterruptScope ctrl_c;
    t = conv.reply(std::move(plan), [&](std::string_view piece) { out.text(piece); },
                   &g_interrupted);
  }
  out.end(t.result.ids);
  report_stop(t, conv, o);
  if (o.verbose) report_stats(++turns, t, cached, conv, o.device);
}

enum class LineKind { kEmpty, kMessage, kReset, kSystem, kExit, kUnknown };
struct Line {
  LineKind kind;
  std::string_view text;  // the message, or the command's argument
};

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

Line classify(std::string_view line) {
  if (trim(line).empty()) return {LineKind::kEmpty, {}};
  if (!line.starts_with('/')) return {LineKind::kMessage, line};
  if (line.starts_with("//")) return {LineKind::kMessage, line.substr(1)};
  const size_t space = line.find_first_of(" \t");
  const std::string_view command = line.substr(0, space);
  const std::string_view argument =
      space == std::string_view::npos ? std::string_view{} : trim(line.substr(space));
  if (command == "/system") return {LineKind::kSystem, argument};
  if (!argument.empty()) return {LineKind::kUnknown, line};
  if (command == "/reset") return {LineKind::kReset, {}};
  if (command == "/exit") return {LineKind::kExit, {}};
  return {LineKind::kUnknown, line};
}

std::optional<std::string> system_message(std::string_view text) {
  if (text.empty()) return std::nullopt;
  return std::string(text);
}

}  // namespace

int chat(const Options& o, Session& s) {
  const ModelConfig& c = s.model->config();
  const ChatTemplate tmpl =
      chat_template_from_name(o.chat_template.empty() ? c.chat_template : o.chat_template);
  Conversation conv(s, tmpl, o.sampler, o.steps);
  std::optional<std::string> system = o.system;  // /system changes it, /reset keeps it
  conv.reset(system);
  const bool terminal = isatty(STDIN_FILENO) == 1;
  const ReplyWriter out(terminal, o.print_ids || o.tokenize_only);
  if (terminal)
    std::fprintf(stderr,
                 "kuiper: chat (%s template, context %d tokens). /reset starts over, "
                 "/system TEXT sets the system message, /exit or Ctrl-D ends, Ctrl-C stops a "
                 "reply.\n",
                 std::string(tmpl.name()).c_str(), conv.context());
  int turns = 0;
  std::string line;
  while (true) {
    if (terminal) write("> ");
    if (!std::getline(std::cin, line)) break;
    if (line.ends_with('\r')) line.pop_back();  // a script written on Windows
    const Line in = classify(line);
    switch (in.kind) {
      case LineKind::kEmpty: continue;
      case LineKind::kMessage: converse(conv, in.text, out, o, turns); continue;
      case LineKind::kReset:
        conv.reset(system);
        std::fprintf(stderr, "kuiper: new conversation\n");
        continue;
      case LineKind::kSystem:
        system = system_message(in.text);
        conv.reset(system);
        std::fprintf(stderr, "kuiper: new conversation with %s\n",
                     in.text.empty() ? "no system message" : "the new system message");
        continue;
      case LineKind::kExit: return 0;
      case LineKind::kUnknown:
        std::fprintf(stderr,
                     "kuiper: unknown command '%s'; commands are /reset, /system TEXT, /exit "
                     "(start a message with // to send a leading /)\n",
                     std::string(in.text).c_str());
        continue;
    }
  }
  if (terminal) write("\n");  // Ctrl-D leaves the cursor after the prompt
  return 0;
}

}  // namespace kuiper::demo
