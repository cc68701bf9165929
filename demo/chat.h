#pragma once
#include "demo/options.h"
#include "demo/session.h"

namespace kuiper::demo {

// The --chat read-eval loop; returns the exit code (0 when the input ends or on /exit).
//
// Each input line is a user message, unless it is empty (only whitespace: ignored) or a command:
//   /reset          a new conversation with the same system message
//   /system TEXT    a new conversation with TEXT as the system message; /system alone: none
//                   (ChatML then uses Qwen's default)
//   /exit           ends the program
//   //TEXT          sends "/TEXT" (any other line starting with '/' is an unknown command)
// The template comes from --template, else from the model file. --system sets the first system
// message. The reply stops at the model's end-of-turn tokens, after --steps tokens, at the end of
// the context, or on Ctrl-C (which only stops the reply; at the prompt it ends the program).
//
// On a terminal (stdin is a tty): prompts with "> " on stdout and streams each reply as it is
// generated, followed by a newline.
//
// Otherwise (a script): no prompt, and stdout has exactly one line for each user message, in
// order, streamed as it is generated: the reply's text with '\' written as "\\", newline as "\n"
// and carriage return as "\r", so a reply never spans lines. A message that was refused (longer
// than the context, or not valid UTF-8) gives an empty line. Commands and empty lines write
// nothing to stdout.
//
// With --ids, in both modes, each reply line is the generated token ids instead, separated by
// spaces, including the stop id when an end-of-turn token ended the reply (as plain --ids).
//
// With --tokenize, nothing is generated: each message's line is the prompt ids of the system
// message and that message (the conversation never gets further), to check what a template and
// a message encode to. Special-token strings in messages are text, never control tokens.
//
// stderr: notices (context full and turns dropped, a refused message, a reply cut off or
// interrupted, unknown commands) as lines starting "kuiper: ". With --verbose also, after each
// reply, a line
//   kuiper: turn N: prefill P tokens (K cached) in S s (R tokens/s); reply G tokens, D tokens/s;
//   context X/C; memory: resident M MiB[, gpu U MiB]
// (on one line): P tokens were fed at cache position K, G generated (the first comes from the
// prefill, the rate D counts the rest), and the cache now holds X of C positions; the process's
// resident memory is M MiB and, on CUDA, its allocator holds U MiB of GPU memory.
int chat(const Options& options, Session& session);

}  // namespace kuiper::demo
