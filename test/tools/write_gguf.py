#!/usr/bin/env python3
"""Write a Hugging Face llama / qwen2 checkpoint as a GGUF file laid out the way llama.cpp's
convert_hf_to_gguf.py lays it out (tensor names, Llama's q/k rows permuted into the interleaved
rotary order and Qwen2's left as they are, Llama 3's rope_freqs.weight, metadata keys, tokenizer
arrays), with the `gguf` package as the writer. For tests: needs numpy and gguf, not torch,
transformers or sentencepiece.

  python3 test/tools/write_gguf.py OUT.gguf HF_DIR [--type f32|f16|q8_0]
         [--drop KEY] [--set KEY=INT] [--arch NAME] [--tensor-type NAME=TYPE]
                                                     (damaged files for bad-input tests)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import gguf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from checkpoints import load_json, open_safetensors_dir, protobuf_fields  # noqa: E402
from export import rotary_unpermute  # noqa: E402

ARCHES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
LAYER_NAMES = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
               "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
               "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_proj.bias": "attn_q.bias",
               "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
               "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
               "mlp.down_proj.weight": "ffn_down.weight", "mlp.up_proj.weight": "ffn_up.weight"}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
# convert_hf_to_gguf.py's names for the pre-tokenizers of these two tokenizers (it finds them by a hash
# of their output on a test text).
PRE = {"llama": "llama-bpe", "qwen2": "qwen2"}


def gguf_name(name: str) -> str:
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
    if m:
        return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"
    return TOP_NAMES[name]


# ------------------------------------------------------------------------------------------------
# sentencepiece ModelProto, read by hand: pieces (field 1: piece 1, score 2, type 3), normalizer_spec
# (field 3: add_dummy_prefix 3)

def sentencepiece_vocab(path: str):
    with open(path, "rb") as f:
        data = f.read()
    tokens, scores, types, add_prefix = [], [], [], True
    for field, _, value in protobuf_fields(data):
        if field == 1:
            piece, score, kind = b"", 0.0, 1
            for f2, _, v2 in protobuf_fields(value):
                if f2 == 1:
                    piece = v2
                elif f2 == 2:
                    score = struct.unpack("<f", v2)[0]
                elif f2 == 3:
                    kind = v2
            tokens.append(piece.decode("utf-8"))
            scores.append(score)
            types.append(kind)  # sentencepiece's Type numbers are GGUF's token types
        elif field == 3:
            for f2, _, v2 in protobuf_fields(value):
                if f2 == 3:
                    add_prefix = bool(v2)
    return tokens, scores, types, add_prefix


def looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or (token.startswith("<") and token.endswith(">")
                                                                  and token in ("<s>", "</s>", "<unk>"))


def add_tokenizer(w: gguf.GGUFWriter, arch: str, model_dir: str, cfg: dict, vocab_size: int):
    tk_path = os.path.join(model_dir, "tokenizer_config.json")
    tk = load_json(tk_path) if os.path.isfile(tk_path) else {}
    spm = os.path.join(model_dir, "tokenizer.model")
    if os.path.isfile(spm):
        tokens, scores, types, add_prefix = sentencepiece_vocab(spm)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_add_space_prefix(add_prefix)
        ids = {t: i for i, t in enumerate(tokens)}
        w.add_bos_token_id(ids["<s>"])
        w.add_eos_token_id(ids["</s>"])
        w.add_unk_token_id(ids["<unk>"])
        w.add_add_bos_token(tk.get("add_bos_token", True))
        w.add_add_eos_token(tk.get("add_eos_token", False))
    else:
        tj = load_json(os.path.join(model_dir, "tokenizer.json"))
        vocab = tj["model"]["vocab"]
        added = {t["id"]: t for t in tj.get("added_tokens", [])}
        reverse = {i: t for t, i in vocab.items()}
        reverse.update({i: t["content"] for i, t in added.items()})
        tokens, types = [], []
        for i in range(vocab_size):
            if i not in reverse:
                tokens.append(f"[PAD{i}]")
                types.append(gguf.TokenType.UNUSED)
            elif i in added:
                tokens.append(reverse[i])
                special = added[i].get("special", False) or looks_special(reverse[i])
                types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
            else:
                tokens.append(reverse[i])
                types.append(gguf.TokenType.NORMAL)
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(PRE[arch])
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        ids = {t: i for i, t in enumerate(tokens)}

        def token_id(kind):
            value = tk.get(f"{kind}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if value is not None:
                return ids[value]
            return cfg.get(f"{kind}_token_id")  # SpecialVocab falls back to config.json

        for kind, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("pad", w.add_pad_token_id)):
            if (tid := token_id(kind)) is not None:
                add(tid)
        post = json.dumps(tj.get("post_processor"))
        w.add_add_bos_token(bool(tk.get("add_bos_token", "TemplateProcessing" in post and "SpecialToken" in post)))
    if isinstance(tk.get("chat_template"), str):
        w.add_chat_template(tk["chat_template"])


def llama3_rope_factors(cfg: dict, head_dim: int) -> np.ndarray | None:
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) != "llama3":
        return None
    base = float(cfg.get("rope_theta", 10000.0))
    factor, low, high = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("model_dir")
    ap.add_argument("--type", choices=("f32", "f16", "q8_0"), default="f32")
    ap.add_argument("--drop", action="append", default=[], help="leave out this metadata key or tensor")
    ap.add_argument("--set", action="append", default=[], help="KEY=INT: a uint32 metadata value")
    ap.add_argument("--arch", help="write this general.architecture instead")
    ap.add_argument("--tensor-type", action="append", default=[], metavar="NAME=TYPE",
                    help="store tensor NAME as this ggml type (e.g. q4_1, which kuiper does not read)")
    a = ap.parse_args(argv)

    cfg = load_json(os.path.join(a.model_dir, "config.json"))
    arch = ARCHES[cfg["architectures"][0]]
    dim, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    head_dim = cfg.get("head_dim") or dim // n_heads
    w = gguf.GGUFWriter(a.out, a.arch or arch)
    drop = set(a.drop)
    # Dropped keys: the writer has no removal, so they are filtered when written.
    add_key = w.add_key_value

    def filtered(key, val, vtype, *rest, **kw):
        if key not in drop:
            add_key(key, val, vtype, *rest, **kw)
    w.add_key_value = filtered

    w.add_name(os.path.basename(os.path.normpath(a.model_dir)))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(dim)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    if arch == "llama":
        w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[a.type])
    add_tokenizer(w, arch, a.model_dir, cfg, cfg["vocab_size"])
    for kv in a.set:
        key, value = kv.split("=")
        w.add_uint32(key, int(value))

    factors = llama3_rope_factors(cfg, head_dim)
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    files = open_safetensors_dir(a.model_dir)
    for name in files:
        if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and cfg.get("tie_word_embeddings")):
            continue
        target = gguf_name(name)
        if target in drop:
            continue
        perm = None
        if arch == "llama" and re.search(r"self_attn\.[qk]_proj\.weight$", name):
            # convert_hf_to_gguf.py's permute(): HF's rotate-half rows into the interleaved order.
            perm = rotary_unpermute(n_heads if ".q_proj" in name else n_kv, head_dim)
        x = files[name].source(name, perm).full().astype(np.float32)
        kind = dict(t.split("=") for t in a.tensor_type).get(target)
        if kind:
            qt = gguf.GGMLQuantizationType[kind.upper()]
            q = gguf.quants.quantize(x, qt)
            w.add_tensor(target, q, raw_shape=q.shape, raw_dtype=qt)
        elif x.ndim == 1 or a.type == "f32":
            w.add_tensor(target, x)
        elif a.type == "f16":
            w.add_tensor(target, x.astype(np.float16))
        else:
            q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(target, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
