#!/usr/bin/env python3
"""Reference side of the random-weight model check (run on the GPU machine, which has torch and
transformers): builds a model of a published config's shape with random weights, saves it as a
Hugging Face checkpoint (bf16 safetensors + config.json + tokenizer.json), and writes
transformers' greedy continuation of a few prompts as JSON. The reference runs in float64 on the
CPU: on the GPU, transformers' fp32 path may use reduced-precision kernels, and with random
weights near-ties are common enough that such noise flips tokens; float64 leaves no doubt which
token is the most likely. Each step's gap between the two best logits is recorded too.

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

    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(args.config, os.path.join(args.out, "config.json"))
    config = transformers.AutoConfig.from_pretrained(args.out)
    try:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except TypeError:  # transformers 4.x spells it torch_dtype
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    # transformers' own initialisation (normal with the config's initializer_range). Wider random
    # weights make attention so peaky that a random net amplifies rounding chaotically.
    # Stored in bf16 (the dtype of these releases); the reference computes in fp32 on exactly
    # the bf16 values, which the bf16 export holds without loss.
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    shutil.copy(args.tokenizer, os.path.join(args.out, "tokenizer.json"))
    model = model.to(torch.float64).eval()

    tok = Tokenizer.from_file(args.tokenizer)
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    if config.model_type == "qwen2":  # tools/export.py also stops Qwen2 at <|endoftext|>
        eos = eos + [config.bos_token_id]
    cases = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.steps, do_sample=False,
                                 eos_token_id=eos, pad_token_id=eos[0], output_scores=True,
                                 return_dict_in_generate=True)
        gaps = [float(top[0] - top[1]) for top in (s[0].topk(2).values for s in out.scores)]
        cases.append({"prompt": prompt, "prompt_ids": ids,
                      "greedy_ids": out.sequences[0, len(ids):].tolist(), "top2_gaps": gaps})
    with open(os.path.join(args.out, "greedy.json"), "w") as f:
        json.dump({"config": args.config, "steps": args.steps, "cases": cases}, f, indent=1)
    print(f"{args.out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, "
          f"{len(cases)} prompts")


if __name__ == "__main__":
    main()
