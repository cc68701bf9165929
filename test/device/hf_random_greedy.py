#!/usr/bin/env python3
"""Reference side of the random-weight model check (run on the GPU machine, which has torch and
transformers): builds a model of a published config's shape with random weights, saves it as a
Hugging Face checkpoint (bf16 safetensors + config.json + tokenizer.json), and writes
transformers' fp32 greedy continuation of a few prompts as JSON.

  hf_random_greedy.py CONFIG_JSON TOKENIZER_JSON OUT_DIR [--steps N] [--seed S]
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from tokenizers import Tokenizer

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:",
    "Once upon a time, in a land far away,",
    "1, 2, 3, 5, 8, 13,",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(args.config, os.path.join(args.out, "config.json"))
    config = transformers.AutoConfig.from_pretrained(args.out)
    try:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except TypeError:  # transformers 4.x spells it torch_dtype
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    # Random init gives nearly flat logits; a wider spread makes greedy choices clear-cut, so the
    # comparison tests the arithmetic rather than the tie-breaking of near-equal logits.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.05)
    # Stored in bf16 (the dtype of these releases); the reference computes in fp32 on exactly
    # the bf16 values, which the bf16 export holds without loss.
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    shutil.copy(args.tokenizer, os.path.join(args.out, "tokenizer.json"))
    model = model.to(torch.float32).cuda().eval()

    tok = Tokenizer.from_file(args.tokenizer)
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    if config.model_type == "qwen2":  # tools/export.py also stops Qwen2 at <|endoftext|>
        eos = eos + [config.bos_token_id]
    cases = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        x = torch.tensor([ids], device="cuda")
        with torch.no_grad():
            out = model.generate(x, max_new_tokens=args.steps, do_sample=False, eos_token_id=eos,
                                 pad_token_id=eos[0])
        cases.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": out[0, len(ids):].tolist()})
    with open(os.path.join(args.out, "greedy.json"), "w") as f:
        json.dump({"config": args.config, "steps": args.steps, "cases": cases}, f, indent=1)
    print(f"{args.out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, "
          f"{len(cases)} prompts")


if __name__ == "__main__":
    main()
