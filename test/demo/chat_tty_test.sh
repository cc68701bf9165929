#!/bin/sh
# llama_infer --chat on a real terminal: a tmux pane types a golden user message, the reply shown
# must be the golden greedy text, Ctrl-C must stop a reply and give the prompt back, and Ctrl-D
# and /exit must end the program cleanly.
#
# usage: chat_tty_test.sh LLAMA_INFER SOURCE_DIR [SHARED_DIR]
# $KUIPER_SHARED_DIR overrides SHARED_DIR, which defaults to SOURCE_DIR/../shared. Exits 77 (skipped) when
# tmux or the shared data is missing.
set -eu

llama_infer=$1
source_dir=$2
shared=${KUIPER_SHARED_DIR:-${3:-$source_dir/../shared}}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${pane:-}" ] && printf '%s\n' '--- pane:' "$pane"; exit 1; }

command -v tmux >/dev/null 2>&1 || skip "tmux is not installed"
models=$shared/models
[ -f "$models/golden_public.json" ] && [ -d "$models/qwen2-kjv" ] ||
  skip "test data not found under $shared (set KUIPER_SHARED_DIR)"

work=$(mktemp -d)
socket=kuiper_chat_tty_$$  # a tmux server of our own, so no one else's sessions are touched
cleanup() {
  tmux -L "$socket" kill-server 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$source_dir/tools/export.py" "$work/qwen2.bin" --hf "$models/qwen2-kjv" -q

# The first Qwen single-turn golden case with a system message (its prompt is what Qwen's own
# template renders): system, user, and the reply text.
python3 - "$models/golden_public.json" "$work" <<'EOF'
import json, sys
cases = json.load(open(sys.argv[1]))["qwen2"]["chat"]
case = next(c for c in cases
            if [m["role"] for m in c["messages"]] == ["system", "user"]
            and c["rendered"] == c["hf_apply_chat_template"])
for name, text in (("system", case["messages"][0]["content"]),
                   ("user", case["messages"][1]["content"]), ("reply", case["greedy_text"])):
    open(f"{sys.argv[2]}/{name}.txt", "w").write(text)
EOF
system=$(cat "$work/system.txt")
user=$(cat "$work/user.txt")
reply=$(cat "$work/reply.txt")

# Starts llama_infer --chat in tmux session $1 with the options that follow; its stderr goes to
# $work/$1.err and its exit code to $work/$1.rc. The shell traps SIGINT so that Ctrl-C reaches
# llama_infer alone and the exit code is still written.
start() {
  name=$1
  shift
  {
    echo "trap : INT"
    printf '%s ' "'$llama_infer'" "'$work/qwen2.bin'" "'$models/qwen2-kjv/tokenizer.json'" \
      --chat -t 1
    for arg in "$@"; do printf "'%s' " "$arg"; done
    echo "2>'$work/$name.err'"
    echo "echo \$? >'$work/$name.rc'"
  } >"$work/$name.sh"
  tmux -L "$socket" new-session -d -s "$name" -x 200 -y 50 "sh '$work/$name.sh'"
}

# Types $2 into session $1, then Enter. As hex bytes: tmux would take a trailing ";" of a literal
# argument for its command separator.
type_line() {
  tmux -L "$socket" send-keys -t "$1" -H $(printf '%s' "$2" | od -An -tx1)
  tmux -L "$socket" send-keys -t "$1" Enter
}

# The pane's text, wrapped lines joined, without trailing spaces (-J keeps them).
capture() { pane=$(tmux -L "$socket" capture-pane -p -J -t "$1" | sed 's/ *$//'); }

# Waits (up to 60 s) until `awk PROGRAM` exits 0 on the pane of session $1.
wait_pane() {
  i=0
  while [ $i -lt 600 ]; do
    capture "$1"
    if printf '%s\n' "$pane" | awk "$2"; then return 0; fi
    [ -f "$work/$1.rc" ] && fail "$1 exited early (rc $(cat "$work/$1.rc")): $(cat "$work/$1.err")"
    sleep 0.1
    i=$((i + 1))
  done
  fail "timed out in $1 waiting for: $3"
}

# An awk program: the last non-empty line of the pane is an empty prompt "> " (trimmed to ">"),
# and at least $1 lines are prompts ("> " or "> text").
ends_with_prompt() {
  echo '$0 != "" { last = $0 } $0 == ">" || substr($0, 1, 2) == "> " { n++ }
        END { exit !(n >= '"$1"' && last == ">") }'
}

wait_exit() {
  i=0
  while [ ! -f "$work/$1.rc" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  [ -f "$work/$1.rc" ] || fail "$1 did not exit"
  rc=$(cat "$work/$1.rc")
  [ "$rc" = 0 ] || fail "$1 exited with $rc: $(cat "$work/$1.err")"
}

# 1. A golden turn, then Ctrl-D.
start golden --temp 0 --system "$system"
wait_pane golden "$(ends_with_prompt 1)" "the first prompt"
type_line golden "$user"
wait_pane golden "$(ends_with_prompt 2)" "the reply and the next prompt"
shown=$(printf '%s\n' "$pane" | awk -v said="> $user" 'found { print; exit } $0 == said { found = 1 }')
[ "$shown" = "$reply" ] || fail "the reply shown is '$shown', the golden greedy text '$reply'"
tmux -L "$socket" send-keys -t golden C-d
wait_exit golden
echo "ok: golden reply on a terminal: $shown; Ctrl-D exits 0"

# 2. Ctrl-C during a reply that would run for thousands of tokens (near-uniform sampling, no
# stop token in sight), then /exit.
start sampled --temp 5 --top-k 0 --top-p 1 --seed 7 -n 100000
wait_pane sampled "$(ends_with_prompt 1)" "the first prompt"
type_line sampled "$user"
# Some of the reply is out: the line after the message has text.
wait_pane sampled "found { ok = length(\$0) > 0; exit } \$0 == \"> $user\" { found = 1 }
                  END { exit !ok }" "the reply to start"
tmux -L "$socket" send-keys -t sampled C-c
wait_pane sampled "$(ends_with_prompt 2)" "the prompt after Ctrl-C"
grep -q "reply interrupted" "$work/sampled.err" || fail "no notice of the interruption: $(cat "$work/sampled.err")"
type_line sampled /exit
wait_exit sampled
echo "ok: Ctrl-C stops the reply and gives the prompt back; /exit exits 0"
