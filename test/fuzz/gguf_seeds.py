#!/usr/bin/env python3
"""Small GGUF files for fuzz_gguf's seed corpus: a llama-shaped model of a few values per tensor with
metadata of every type (arrays and nested arrays included), one with a custom alignment, one qwen2
with biases and a block-type tensor. Needs numpy and the gguf package.

  python3 test/fuzz/gguf_seeds.py DIR
"""
import os
import sys

import numpy as np
import gguf


def model(path, arch="llama", alignment=None, block_type=False):
    w = gguf.GGUFWriter(path, arch)
    if alignment:
        w.add_custom_alignment(alignment)
    dim, ffn, vocab = 32, 64, 8
    w.add_context_length(16)
    w.add_embedding_length(dim)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    w.add_token_types([1] * (vocab - 1) + [3])
    w.add_token_merges(["t 0"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(vocab - 1)
    w.add_chat_template("<|im_start|>")
    # One of every scalar type, and arrays (nested too).
    w.add_uint8("x.u8", 1)
    w.add_int8("x.i8", -1)
    w.add_uint16("x.u16", 2)
    w.add_int16("x.i16", -2)
    w.add_uint32("x.u32", 3)
    w.add_int32("x.i32", -3)
    w.add_uint64("x.u64", 4)
    w.add_int64("x.i64", -4)
    w.add_float32("x.f32", 0.5)
    w.add_float64("x.f64", 0.25)
    w.add_bool("x.bool", True)
    w.add_string("x.str", "hello")
    w.add_array("x.arr", [1, 2, 3])
    w.add_array("x.nested", [[1, 2], [3]])
    rng = np.random.default_rng(0)

    def t(name, *shape):
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    t("token_embd.weight", vocab, dim)
    t("output_norm.weight", dim)
    t("blk.0.attn_norm.weight", dim)
    t("blk.0.attn_q.weight", dim, dim)
    t("blk.0.attn_k.weight", dim // 2, dim)
    t("blk.0.attn_v.weight", dim // 2, dim)
    t("blk.0.attn_output.weight", dim, dim)
    if arch == "qwen2":
        t("blk.0.attn_q.bias", dim)
        t("blk.0.attn_k.bias", dim // 2)
        t("blk.0.attn_v.bias", dim // 2)
    t("blk.0.ffn_norm.weight", dim)
    t("blk.0.ffn_up.weight", ffn, dim)
    t("blk.0.ffn_gate.weight", ffn, dim)
    if block_type:
        x = rng.standard_normal((dim, ffn)).astype(np.float32)
        q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.ffn_down.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        t("blk.0.ffn_down.weight", dim, ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model(os.path.join(out, "llama.gguf"))
    model(os.path.join(out, "aligned64.gguf"), alignment=64)
    model(os.path.join(out, "qwen2_q8_0.gguf"), arch="qwen2", block_type=True)


if __name__ == "__main__":
    main()
