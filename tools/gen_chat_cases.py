#!/usr/bin/env python3
"""Generates the expected chat-template renderings in test/data/chat/ (run once, commit the output).

The references are the real ones, not a re-implementation of our C++:
  chatml  Qwen2.5-Instruct's template (shared/models/qwen2.5/tokenizer_config.json), rendered by
          transformers' apply_chat_template; ids tokenized by transformers with the Qwen2.5
          tokenizer.json (shared/models/qwen2-kjv/).
  llama3  the Llama 3 template of shared/models/llama3-kjv/tokenizer_config.json; ids with its
          tokenizer.json.
  zephyr  TinyLlama-1.1B-Chat's chat_template.jinja (shared/models/tinyllama-chat/...); ids with its
          tokenizer.json.
  llama2  Meta's reference chat format: the dialog formatting of `Llama.chat_completion` in Meta's
          llama/generation.py, re-stated below, encoded with the `sentencepiece` package and
          shared/models/llama2/tokenizer.model. There is no text form; only ids are stored.

`ids` of the HF templates are apply_chat_template(tokenize=True), which adds no special tokens of
its own (no BOS unless the template writes one).

Usage: pip install transformers jinja2 sentencepiece
       python3 tools/gen_chat_cases.py [--shared ../shared] [--out test/data/chat]
"""
import argparse
import json
import pathlib
import re

import sentencepiece
import transformers
from transformers import PreTrainedTokenizerFast

SYS = {"role": "system", "content": "You are a helpful assistant."}


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


def s(text):
    return {"role": "system", "content": text}


# (name, messages, add_generation_prompt)
CASES = [
    ("single_user", [u("Continue the verse: In the beginning God")], True),
    ("system_user", [SYS, u("Continue the verse: The LORD is my shepherd;")], True),
    ("multi_turn", [u("Hello!"), a("Hi there. How can I help?"), u("Tell me a verse.")], True),
    ("system_multi_turn",
     [s("Answer briefly."), u("What is 2+2?"), a("4"), u("And 3+3?"), a("6"), u("Thanks!")], True),
    ("history_no_generation_prompt", [SYS, u("Hi"), a("Hello, friend.")], False),
    ("user_no_generation_prompt", [u("Only a question")], False),
    ("empty_user", [u("")], True),
    ("empty_system", [s(""), u("Hello")], True),
    ("empty_assistant", [u("Say nothing."), a(""), u("Good.")], True),
    ("whitespace_user", [u("  leading and trailing spaces  ")], True),
    ("newlines",
     [s("\nSystem with newlines\n\n"), u("\n\nline one\nline two\n  "), a("  reply \n\n"),
      u("\t tabbed \t")], True),
    ("only_whitespace", [u(" \n\t "), a("\n"), u("x")], True),
    ("unicode",
     [s("Sei höflich. 礼貌一点。"), u("Grüße, 世界! 🙂 naïve café — «quotes»"),
      a("Привет! こんにちは 🌍"), u("ελληνικά; עברית; العربية")], True),
    # Python's str.strip() (Meta's .strip(), Jinja's trim) also strips Unicode white space.
    ("unicode_whitespace", [u("\u00a0\u3000 wide spaces\u2003\u2028"), a("\u205f ok \u00a0"),
                            u("\u200b zero-width is not space \u200b")], True),
    ("brackets_in_content", [u("What does [INST] mean? And <<SYS>>?")], True),
    # Turn orders the HF templates accept but Meta's Llama 2 format does not.
    ("system_later", [u("Hi"), a("Hello"), s("Be terse from now on."), u("Ok?")], True),
    ("two_users", [u("First."), u("Second.")], True),
    ("assistant_first", [a("I speak first."), u("Fine.")], True),
    ("only_system", [s("Nothing else.")], True),
]


# --- Meta's Llama 2 chat format (llama/generation.py, Llama.chat_completion) ---
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


def meta_llama2_ids(sp, dialog):
    """Meta's dialog -> prompt tokens, or None where Meta's code rejects the dialog. A dialog that
    ends with an assistant message gives the encoded (prompt, answer) pairs only: the history the
    next user turn is appended to."""
    def encode(text, bos, eos):
        t = sp.encode(text)
        return ([sp.bos_id()] if bos else []) + t + ([sp.eos_id()] if eos else [])

    if dialog and dialog[0]["role"] == "system":
        if len(dialog) < 2:
            return None
        dialog = [{"role": dialog[1]["role"],
                   "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]}] + dialog[2:]
    if not (all(m["role"] == "user" for m in dialog[::2]) and
            all(m["role"] == "assistant" for m in dialog[1::2])):
        return None
    ids = sum([encode(f"{B_INST} {(p['content']).strip()} {E_INST} {(ans['content']).strip()} ",
                      bos=True, eos=True)
               for p, ans in zip(dialog[::2], dialog[1::2])], [])
    if dialog[-1]["role"] == "user":
        ids += encode(f"{B_INST} {(dialog[-1]['content']).strip()} {E_INST}", bos=True, eos=False)
    return ids


def hf_render(tok, template, messages, gen, **kwargs):
    text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                   add_generation_prompt=gen, **kwargs)
    enc = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                  add_generation_prompt=gen, **kwargs)
    ids = enc["input_ids"] if isinstance(enc, dict) or hasattr(enc, "keys") else enc
    return text, list(ids)


def main():
    here = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=pathlib.Path, default=here.parent / "shared")
    ap.add_argument("--out", type=pathlib.Path, default=here / "test" / "data" / "chat")
    args = ap.parse_args()
    models = args.shared / "models"
    args.out.mkdir(parents=True, exist_ok=True)

    tiny = models / "tinyllama-chat" / "resaved-transformers-4.56.0"
    hf = {
        "chatml": (models / "qwen2-kjv" / "tokenizer.json",
                   json.loads((models / "qwen2.5" / "tokenizer_config.json").read_text())["chat_template"],
                   {}, "Qwen2.5-Instruct tokenizer_config.json chat_template"),
        "llama3": (models / "llama3-kjv" / "tokenizer.json",
                   json.loads((models / "llama3-kjv" / "tokenizer_config.json").read_text())["chat_template"],
                   {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                   "llama3-kjv tokenizer_config.json chat_template"),
        "zephyr": (tiny / "tokenizer.json", (tiny / "chat_template.jinja").read_text(),
                   {"bos_token": "<s>", "eos_token": "</s>"},
                   "TinyLlama-1.1B-Chat chat_template.jinja"),
    }
    golden = json.loads((models / "golden_public.json").read_text())
    for name, (tok_file, template, special, source) in hf.items():
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), **special)
        # This transformers renders the golden file's chat cases as the one that made it did.
        for g in golden.get({"chatml": "qwen2"}.get(name, name), {}).get("chat", []):
            assert hf_render(tok, template, g["messages"], True)[0] == g["hf_apply_chat_template"]
        cases = []
        for case_name, messages, gen in CASES:
            text, ids = hf_render(tok, template, messages, gen)
            cases.append({"name": case_name, "messages": messages, "add_generation_prompt": gen,
                          "text": text, "ids": ids})
        write(args.out / f"{name}.json", {
            "template": name,
            "source": f"transformers {transformers.__version__} apply_chat_template with the {source}; "
                      f"ids: tokenize=True with {tok_file.relative_to(models.parent)}",
            "cases": cases})

    sp = sentencepiece.SentencePieceProcessor(model_file=str(models / "llama2" / "tokenizer.model"))
    cases = []
    for case_name, messages, gen in CASES:
        ids = meta_llama2_ids(sp, messages)
        case = {"name": case_name, "messages": messages, "add_generation_prompt": gen}
        if ids is None:
            case["error"] = True  # Meta's chat_completion rejects this turn order
        else:
            case["ids"] = ids
        cases.append(case)
    write(args.out / "llama2.json", {
        "template": "llama2",
        "source": "Meta's llama/generation.py chat_completion dialog formatting, sentencepiece "
                  f"{sentencepiece.__version__} with shared/models/llama2/tokenizer.model; a dialog "
                  "ending with an assistant message gives its (prompt, answer) pairs only",
        "cases": cases})


def write(path, obj):
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    # One line per id list rather than one per id.
    text = re.sub(r"\[\s*(\d+(?:,\s*\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")
    print("wrote", path, len(obj["cases"]), "cases")


if __name__ == "__main__":
    main()
