#!/usr/bin/env python3
"""A Hugging Face Llama checkpoint of a published config's shape with random fp16 weights, written
with numpy only (no torch): config.json, model.safetensors and the given tokenizer.model, which is
what test/tools/write_gguf.py reads. For speed benchmarks of GGUF files on the GPU machine, where
random weights are made rather than carried.
  random_hf.py CONFIG_JSON TOKENIZER_MODEL OUT_DIR [--seed S]"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from writers import write_safetensors  # noqa: E402


def shapes(c):
    dim, ffn, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    head = c.get("head_dim") or dim // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * head, c["num_key_value_heads"] * head
    yield "model.embed_tokens.weight", (c["vocab_size"], dim)
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (dim,)
        yield p + "self_attn.q_proj.weight", (q, dim)
        yield p + "self_attn.k_proj.weight", (kv, dim)
        yield p + "self_attn.v_proj.weight", (kv, dim)
        yield p + "self_attn.o_proj.weight", (dim, q)
        yield p + "post_attention_layernorm.weight", (dim,)
        yield p + "mlp.gate_proj.weight", (ffn, dim)
        yield p + "mlp.up_proj.weight", (ffn, dim)
        yield p + "mlp.down_proj.weight", (dim, ffn)
    yield "model.norm.weight", (dim,)
    if not c.get("tie_word_embeddings"):
        yield "lm_head.weight", (c["vocab_size"], dim)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with open(a.config) as f:
        c = json.load(f)
    rng = np.random.default_rng(a.seed)
    tensors = {}
    for name, shape in shapes(c):
        if len(shape) == 1:
            tensors[name] = np.ones(shape, np.float16)  # norms: the identity, as at initialization
        else:
            tensors[name] = (rng.standard_normal(shape, np.float32) * c.get("initializer_range", 0.02)).astype(np.float16)
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), tensors)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
