#!/usr/bin/env python3
"""Convert a checkpoint into kuiper's model file (docs/model-format.md), or llama2.c's v0 with --legacy.

  python3 tools/export.py OUT.bin --hf HF_DIR           [--dtype fp32|fp16|bf16|int8|q4] [--legacy]
  python3 tools/export.py OUT.bin --meta-llama META_DIR [--dtype ...] [--legacy]
  python3 tools/export.py OUT.bin --random CONFIG_JSON  [--dtype ...] [--seed N]

Chunks of rows are converted on --threads N threads (default: the CPUs this process may use) and
written in order: the file is the same whatever N.

--dtype int8 stores every matrix as int8 codes with one scale per group of --group-size (32, 64 or
128; default 64) values along each row, the scales in --scale-dtype (fp16 or fp32; default fp16).
--dtype q4 stores wq, wk, wv, wo, w1, w2, w3 as 4-bit codes with one fp16 scale per group of
--group-size (32, 64 or 128; default 32) values (4.5, 4.25 or 4.125 bits a weight), and the embedding
table and an untied classifier as int8 with fp16 scales in the same groups.

HF_DIR: a Hugging Face LlamaForCausalLM / Qwen2ForCausalLM directory (config.json + *.safetensors).
META_DIR: Meta's consolidated.*.pth + params.json. CONFIG_JSON: an HF config.json whose shape a
random-weight model takes (benchmarks). Needs numpy only; torch is not used.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checkpoints import (CHAT_TEMPLATES, chat_template_name, embeddable_tokenizer, find_tokenizer,  # noqa: E402
                         load_json,
                         load_torch_checkpoint, open_safetensors_dir, tokenizer_file_facts)
from kuiper_format import (DTYPES, GROUP_SIZES, SCALE_DTYPES, ConcatSource, ConstSource,  # noqa: E402
                           ExportError, RandomSource, chunk_rows, write_kuiper, write_legacy)

HF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
LAYER_PARTS = ("attention_norm", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "ffn_norm", "w1", "w2", "w3")


# ----------------------------------------------------------------------------------------------
# shapes and names

def expected_shapes(c: dict) -> dict[str, tuple]:
    """Our tensor names, in file order, with their shapes."""
    d, hd, q, kv = c["dim"], c["hidden_dim"], c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    per_layer = {"attention_norm": (d,), "wq": (q, d), "wk": (kv, d), "wv": (kv, d), "wo": (d, q),
                 "bq": (q,), "bk": (kv,), "bv": (kv,), "ffn_norm": (d,), "w1": (hd, d), "w2": (d, hd),
                 "w3": (hd, d)}
    out = {"tok_embeddings": (c["vocab_size"], d)}
    for layer in range(c["n_layers"]):
        for part in LAYER_PARTS:
            if part in ("bq", "bk", "bv") and not c["attention_bias"]:
                continue
            out[f"layers.{layer}.{part}"] = per_layer[part]
    out["norm"] = (d,)
    if not c["tied_embeddings"]:
        out["output"] = (c["vocab_size"], d)
    return out


def rotary_unpermute(n_heads: int, head_dim: int) -> np.ndarray:
    """Row order taking HF's rotate-half q/k rows to Meta's interleaved ones: within each head,
    new row 2j <- HF row j and new row 2j+1 <- HF row j + head_dim/2."""
    half = head_dim // 2
    within = np.empty(head_dim, dtype=np.int64)
    within[0::2] = np.arange(half)
    within[1::2] = np.arange(half) + half
    return (np.arange(n_heads)[:, None] * head_dim + within[None, :]).reshape(-1)


def ids_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def union(*lists) -> list[int]:
    out = []
    for lst in lists:
        out += [v for v in lst if v not in out]
    return out


# ----------------------------------------------------------------------------------------------
# Hugging Face config.json

def hf_rope(cfg: dict):
    params = cfg.get("rope_parameters") or {}  # transformers 5 spelling
    theta = float(cfg.get("rope_theta") or params.get("rope_theta") or 10000.0)
    scaling = cfg.get("rope_scaling") or params
    kind = scaling.get("rope_type", scaling.get("type")) if scaling else None
    if kind in (None, "default"):
        return theta, None
    if kind != "llama3":
        raise ExportError(f"unsupported rope_scaling type '{kind}' (only llama3 is)")
    try:
        return theta, {"type": "llama3", "factor": float(scaling["factor"]),
                       "low_freq_factor": float(scaling["low_freq_factor"]),
                       "high_freq_factor": float(scaling["high_freq_factor"]),
                       "original_max_position": int(scaling["original_max_position_embeddings"])}
    except KeyError as e:
        raise ExportError(f"rope_scaling of type llama3 lacks {e.args[0]}") from None


def hf_config(cfg: dict, where: str) -> dict:
    """Our config (model shape part) from a Hugging Face config.json."""
    names = cfg.get("architectures") or []
    arch_name = names[0] if names else {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}.get(
        cfg.get("model_type"), cfg.get("model_type"))
    if arch_name is None:
        raise ExportError(f"{where}: names no architecture (not a Hugging Face config.json?)")
    if arch_name not in HF_ARCHITECTURES:
        raise ExportError(f"{where}: unsupported architecture {arch_name!r} "
                          f"(supported: {', '.join(HF_ARCHITECTURES)})")
    arch = HF_ARCHITECTURES[arch_name]
    if cfg.get("hidden_act", "silu") != "silu":
        raise ExportError(f"{where}: unsupported hidden_act {cfg['hidden_act']!r} (only silu)")
    if cfg.get("mlp_bias"):
        raise ExportError(f"{where}: mlp_bias is not supported")
    if arch == "llama" and cfg.get("attention_bias"):
        raise ExportError(f"{where}: Llama attention_bias (with an o_proj bias) is not supported")
    if arch == "qwen2" and cfg.get("use_sliding_window"):
        print(f"export.py: warning: {where}: use_sliding_window is ignored (full attention everywhere)",
              file=sys.stderr)
    try:
        dim, n_heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        c = {"architecture": arch, "dim": dim, "hidden_dim": int(cfg["intermediate_size"]),
             "n_layers": int(cfg["num_hidden_layers"]), "n_heads": n_heads,
             "n_kv_heads": int(cfg.get("num_key_value_heads") or n_heads),
             "head_dim": int(cfg.get("head_dim") or dim // n_heads), "vocab_size": int(cfg["vocab_size"]),
             "max_seq_len": int(cfg.get("max_position_embeddings") or 2048)}
    except KeyError as e:
        raise ExportError(f"{where}: lacks {e.args[0]}") from None
    c["rope_theta"], c["rope_scaling"] = hf_rope(cfg)
    c["norm_eps"] = float(cfg.get("rms_norm_eps", 1e-6))
    c["tied_embeddings"] = bool(cfg.get("tie_word_embeddings", False))
    c["attention_bias"] = arch == "qwen2"
    if c["head_dim"] % 2 or c["n_heads"] % c["n_kv_heads"]:
        raise ExportError(f"{where}: head_dim must be even and n_heads a multiple of n_kv_heads")
    return c


def hf_metadata(c: dict, cfg: dict, model_dir: str, args) -> dict:
    """bos/eos, add_bos, chat template and tokenizer size from the files beside config.json."""
    gen_path = os.path.join(model_dir, "generation_config.json")
    gen = load_json(gen_path) if os.path.isfile(gen_path) else {}
    tk_path = os.path.join(model_dir, "tokenizer_config.json")
    tk = load_json(tk_path) if os.path.isfile(tk_path) else {}

    bos = cfg.get("bos_token_id", gen.get("bos_token_id"))
    eos = union(ids_list(cfg.get("eos_token_id")), ids_list(gen.get("eos_token_id")))
    bos_named = bool(tk.get("bos_token"))
    if ("bos_token" in tk and not bos_named) or (c["architecture"] == "qwen2" and not bos_named) or bos is None:
        # The tokenizer has no BOS (Qwen2): config's bos_token_id is really <|endoftext|>, which
        # ends a document, so it stops generation as Qwen2.5's generation_config.json says.
        if c["architecture"] == "qwen2" and bos is not None:
            eos = union(eos, [int(bos)])
        bos = -1

    tok_file = find_tokenizer([model_dir], args.tokenizer)
    tok_size, prepends = tokenizer_file_facts(tok_file) if tok_file else (0, None)
    if isinstance(tk.get("add_bos_token"), bool):
        add_bos = tk["add_bos_token"]
    elif prepends is not None:
        add_bos = prepends
    else:
        add_bos = c["architecture"] == "llama"

    template = None
    jinja = os.path.join(model_dir, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            template = chat_template_name(f.read())
    if template is None:
        template = chat_template_name(tk.get("chat_template"))
    if template is None:
        template = "chatml" if c["architecture"] == "qwen2" else ""
    return finish_metadata(c, int(bos), eos, add_bos, template, tok_size, args)


def finish_metadata(c, bos, eos, add_bos, template, tok_size, args) -> dict:
    if args.chat_template is not None:
        template = "" if args.chat_template == "none" else args.chat_template
    if args.max_seq_len:
        c["max_seq_len"] = args.max_seq_len
    c.update({"dtype": args.dtype, "bos_id": bos, "eos_ids": eos, "add_bos": bool(add_bos and bos >= 0),
              "chat_template": template, "tokenizer_vocab_size": int(tok_size)})
    order = ("architecture", "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
             "vocab_size", "max_seq_len", "rope_theta", "rope_scaling", "norm_eps", "tied_embeddings",
             "attention_bias", "dtype", "group_size", "bos_id", "eos_ids", "add_bos", "chat_template",
             "tokenizer_vocab_size")
    if args.dtype in ("int8", "q4"):
        c["group_size"] = group_size(args)
    return {k: c[k] for k in order if k in c}


def group_size(args) -> int:
    return getattr(args, "group_size", None) or (32 if args.dtype == "q4" else 64)


def scale_dtype(args) -> str:
    return getattr(args, "scale_dtype", None) or "fp16"


def require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise ExportError(f"{path}: no such {what} directory")


def load_config_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ExportError(f"{os.path.dirname(path) or '.'}: no {os.path.basename(path)} found")
    return load_json(path)


# ----------------------------------------------------------------------------------------------
# --hf

HF_NAMES = {"attention_norm": "input_layernorm.weight", "wq": "self_attn.q_proj.weight",
            "wk": "self_attn.k_proj.weight", "wv": "self_attn.v_proj.weight", "wo": "self_attn.o_proj.weight",
            "bq": "self_attn.q_proj.bias", "bk": "self_attn.k_proj.bias", "bv": "self_attn.v_proj.bias",
            "ffn_norm": "post_attention_layernorm.weight", "w1": "mlp.gate_proj.weight",
            "w2": "mlp.down_proj.weight", "w3": "mlp.up_proj.weight"}


HF_TOP_NAMES = {"tok_embeddings": "model.embed_tokens.weight", "norm": "model.norm.weight",
                "output": "lm_head.weight"}


def source_name(name: str, layer_prefix: str, layer_names: dict, top_names: dict) -> str:
    """A checkpoint's name for one of our tensors."""
    if name.startswith("layers."):
        _, layer, part = name.split(".")
        return f"{layer_prefix}{layer}.{layer_names[part]}"
    return top_names[name]


def hf_name(name: str) -> str:
    return source_name(name, "model.layers.", HF_NAMES, HF_TOP_NAMES)


def hf_model(model_dir: str, args):
    require_dir(model_dir, "Hugging Face model")
    cfg = load_config_json(os.path.join(model_dir, "config.json"))
    c = hf_config(cfg, os.path.join(model_dir, "config.json"))
    files = open_safetensors_dir(model_dir)
    perms = {"wq": c["n_heads"], "bq": c["n_heads"], "wk": c["n_kv_heads"], "bk": c["n_kv_heads"]}
    tensors, used = [], set()
    for name, shape in expected_shapes(c).items():
        src_name = hf_name(name)
        if src_name not in files:
            raise ExportError(f"{model_dir}: missing tensor {src_name}")
        st = files[src_name]
        if st.shape(src_name) != shape:
            raise ExportError(f"{model_dir}: shape mismatch: {src_name} is {list(st.shape(src_name))}, "
                              f"config.json implies {list(shape)}")
        part = name.split(".")[-1]
        perm = rotary_unpermute(perms[part], c["head_dim"]) if part in perms else None
        tensors.append((name, st.source(src_name, perm)))
        used.add(src_name)
    unused = [n for n in files if n not in used and not n.endswith("rotary_emb.inv_freq")
              and not (n == "lm_head.weight" and c["tied_embeddings"])]
    if unused:
        raise ExportError(f"{model_dir}: tensors this architecture does not have, e.g. {unused[0]} "
                          f"({len(unused)} in all)")
    return hf_metadata(c, cfg, model_dir, args), tensors


# ----------------------------------------------------------------------------------------------
# --meta-llama

META_NAMES = {"attention_norm": "attention_norm.weight", "wq": "attention.wq.weight",
              "wk": "attention.wk.weight", "wv": "attention.wv.weight", "wo": "attention.wo.weight",
              "ffn_norm": "ffn_norm.weight", "w1": "feed_forward.w1.weight", "w2": "feed_forward.w2.weight",
              "w3": "feed_forward.w3.weight"}
# Meta's model parallelism: column-parallel layers are split along dim 0, row-parallel along dim 1
# (the embedding: dim 1 in Llama 2, dim 0 (vocab) in Llama 3: decided by shape). Norms are replicated.
META_SPLIT_AXIS = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1}


META_TOP_NAMES = {"tok_embeddings": "tok_embeddings.weight", "norm": "norm.weight", "output": "output.weight"}


def meta_name(name: str) -> str:
    return source_name(name, "layers.", META_NAMES, META_TOP_NAMES)


def merge_shards(name: str, pieces, shape: tuple, where: str):
    """One tensor of several model-parallel shards, checked against its full `shape`."""
    shapes = [p.shape for p in pieces]
    if len(pieces) == 1 or all(s == shape for s in shapes):
        if shapes[0] != shape:
            raise ExportError(f"{where}: shape mismatch: {meta_name(name)} is {list(shapes[0])}, "
                              f"params.json implies {list(shape)}")
        return pieces[0].source()
    part = name.split(".")[-1]
    axes = [META_SPLIT_AXIS.get(part, 0)]
    axes.append(1 - axes[0])
    for axis in axes:
        if len(shape) == 2 and all(s[1 - axis] == shape[1 - axis] for s in shapes) \
                and sum(s[axis] for s in shapes) == shape[axis]:
            return ConcatSource([p.source() for p in pieces], axis)
    raise ExportError(f"{where}: shape mismatch: shards of {meta_name(name)} are {[list(s) for s in shapes]}, "
                      f"which do not make {list(shape)}")


def sources_equal(a, b) -> bool:
    if a.shape != b.shape:
        return False
    step = chunk_rows(a.shape)
    try:
        return all(np.array_equal(a.rows(r, min(r + step, a.shape[0])), b.rows(r, min(r + step, a.shape[0])))
                   for r in range(0, a.shape[0], step))
    finally:
        a.close()
        b.close()


def meta_model(meta_dir: str, args):
    require_dir(meta_dir, "Meta checkpoint")
    params = load_config_json(os.path.join(meta_dir, "params.json"))
    shard_files = sorted(f for f in os.listdir(meta_dir) if f.startswith("consolidated.") and f.endswith(".pth"))
    if not shard_files:
        raise ExportError(f"{meta_dir}: no consolidated.*.pth weights found")
    shards = [load_torch_checkpoint(os.path.join(meta_dir, f)) for f in shard_files]
    try:
        dim, n_heads, n_layers = int(params["dim"]), int(params["n_heads"]), int(params["n_layers"])
    except KeyError as e:
        raise ExportError(f"{meta_dir}/params.json: lacks {e.args[0]}") from None

    def pieces(name):
        src = meta_name(name)
        for f, shard in zip(shard_files, shards):
            if src not in shard:
                raise ExportError(f"{meta_dir}/{f}: missing tensor {src}")
        return [shard[src] for shard in shards]

    # Sizes params.json may not give: vocab (may be -1) from the embedding, hidden_dim from w1.
    n = len(shards)
    emb = pieces("tok_embeddings")[0].shape
    vocab = emb[0] if (n > 1 and emb[1] * n == dim) else emb[0] * n
    if int(params.get("vocab_size", -1)) > 0 and int(params["vocab_size"]) != vocab:
        raise ExportError(f"{meta_dir}: shape mismatch: tok_embeddings has {vocab} rows, params.json "
                          f"says vocab_size {params['vocab_size']}")
    llama3 = vocab >= 128000
    c = {"architecture": "llama", "dim": dim, "hidden_dim": pieces("layers.0.w1")[0].shape[0] * n,
         "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": int(params.get("n_kv_heads") or n_heads),
         "head_dim": dim // n_heads, "vocab_size": vocab, "rope_theta": float(params.get("rope_theta", 10000.0)),
         "norm_eps": float(params.get("norm_eps", 1e-5)), "tied_embeddings": False, "attention_bias": False}
    out_shapes = expected_shapes(c)
    tensors = {name: merge_shards(name, pieces(name), shape, meta_dir) for name, shape in out_shapes.items()}
    # Meta checkpoints always hold output.weight; a copy of the embedding means tied (Llama 3.2 1B/3B).
    c["tied_embeddings"] = sources_equal(tensors["tok_embeddings"], tensors["output"])
    if c["tied_embeddings"]:
        del tensors["output"]

    c["rope_scaling"] = None
    if params.get("use_scaled_rope"):
        # params.json gives no factor: 8 for Llama 3.1/3.3, 32 for 3.2 1B/3B (the tied ones), as HF's
        # converter does; rope_scaling_factor in params.json (Llama 4 style) wins.
        factor = params.get("rope_scaling_factor") or (32.0 if c["tied_embeddings"] else 8.0)
        c["rope_scaling"] = {"type": "llama3", "factor": float(factor),
                             "low_freq_factor": float(params.get("low_freq_factor", 1.0)),
                             "high_freq_factor": float(params.get("high_freq_factor", 4.0)),
                             "original_max_position": int(params.get("original_max_position_embeddings", 8192))}
    c["max_seq_len"] = int(params.get("max_seq_len") or
                           (131072 if c["rope_scaling"] else 8192 if llama3 else 4096))
    if llama3:
        bos, eos, template = 128000, [128001, 128008, 128009], "llama3"
    else:
        bos, eos, template = 1, [2], ""
    # Meta's Llama 2 downloads keep tokenizer.model beside the model folders.
    tok_file = find_tokenizer([meta_dir, os.path.dirname(os.path.abspath(meta_dir))], args.tokenizer,
                              names=("tokenizer.model",))
    tok_size = tokenizer_file_facts(tok_file)[0] if tok_file else 0
    config = finish_metadata(c, bos, eos, True, template, tok_size, args)
    return config, [(name, tensors[name]) for name in out_shapes if name in tensors]


# ----------------------------------------------------------------------------------------------
# --random

def random_model(config_path: str, args):
    cfg = load_config_json(config_path)
    c = hf_config(cfg, config_path)
    config = hf_metadata(c, cfg, os.path.dirname(os.path.abspath(config_path)), args)
    tensors = []
    for i, (name, shape) in enumerate(expected_shapes(config).items()):
        norm = name == "norm" or name.endswith("_norm")
        tensors.append((name, ConstSource(shape, 1.0) if norm else RandomSource(shape, args.seed, i)))
    return config, tensors


def tokenizer_bytes(args) -> bytes | None:
    """The bytes of the tokenizer file to embed (docs/model-format.md, "Embedded tokenizer"), from the
    folders the metadata's tokenizer facts come from."""
    if args.hf:
        dirs = [args.hf]
    elif args.meta_llama:
        dirs = [args.meta_llama, os.path.dirname(os.path.abspath(args.meta_llama))]
    else:
        dirs = [os.path.dirname(os.path.abspath(args.random))]
    path = embeddable_tokenizer(dirs, args.tokenizer)
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------
# CLI

def parse_args(argv):
    p = argparse.ArgumentParser(prog="export.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", metavar="OUT.bin", help="file to write (atomically: a temp file, then renamed)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", metavar="HF_DIR", help="Hugging Face model directory (safetensors)")
    src.add_argument("--meta-llama", metavar="META_DIR", help="Meta checkpoint: consolidated.*.pth + params.json")
    src.add_argument("--random", metavar="CONFIG_JSON", help="random weights of an HF config.json's shape")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="dtype of the matrices (default fp32); "
                   "norms and biases are always fp32")
    p.add_argument("--group-size", type=int, choices=GROUP_SIZES, help="with --dtype int8 or q4: values "
                   "per scale, along each row (default 64 for int8, 32 for q4)")
    p.add_argument("--scale-dtype", choices=SCALE_DTYPES, help="with --dtype int8: dtype of the scales "
                   "(default fp16)")
    p.add_argument("--legacy", action="store_true", help="write llama2.c's v0 format (fp32 only)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json / tokenizer.model (or a folder with "
                   "one) whose size to record; default: the one in the checkpoint folder")
    p.add_argument("--chat-template", choices=CHAT_TEMPLATES + ("none",),
                   help="override the detected chat template")
    p.add_argument("--max-seq-len", type=int, help="override max_seq_len (default: the checkpoint's)")
    p.add_argument("--threads", type=int, metavar="N", help="threads reading, converting and quantizing "
                   "chunks of rows (default: the CPUs this process may use); the file does not depend on it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    try:
        if args.legacy and args.dtype != "fp32":
            raise ExportError(f"--legacy writes fp32 only (llama2.c's v0 format), not {args.dtype}")
        if args.dtype == "q4" and args.scale_dtype:
            raise ExportError("--scale-dtype goes with --dtype int8, not q4 (whose scales are always fp16)")
        if args.dtype not in ("int8", "q4") and (args.group_size or args.scale_dtype):
            raise ExportError(f"--group-size and --scale-dtype go with --dtype int8 (--group-size also "
                              f"with q4), not {args.dtype}")
        if args.max_seq_len is not None and args.max_seq_len <= 0:
            raise ExportError("--max-seq-len must be positive")
        if args.threads is not None and args.threads <= 0:
            raise ExportError("--threads must be positive")
        if args.hf:
            config, tensors = hf_model(args.hf, args)
        elif args.meta_llama:
            config, tensors = meta_model(args.meta_llama, args)
        else:
            config, tensors = random_model(args.random, args)
        if args.legacy:
            write_legacy(args.out, config, tensors, show_progress=not args.quiet, threads=args.threads)
        else:
            write_kuiper(args.out, config, tensors, show_progress=not args.quiet, scale_dtype=scale_dtype(args),
                         threads=args.threads, tokenizer=tokenizer_bytes(args))
    except ExportError as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export.py: error: {e.filename or args.out}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export.py: interrupted; nothing written", file=sys.stderr)
        return 130
    if not args.quiet:
        n_params = sum(int(np.prod(src.shape)) for _, src in tensors)
        kind = "llama2.c v0" if args.legacy else config["dtype"]
        if config["dtype"] == "int8":
            kind += f" (groups of {config['group_size']}, {scale_dtype(args)} scales)"
        elif config["dtype"] == "q4":
            kind += f" (groups of {config['group_size']}, fp16 scales; embeddings int8)"
        print(f"export.py: wrote {args.out}: {config['architecture']}, {n_params / 1e6:.1f}M parameters, "
              f"{kind}, {os.path.getsize(args.out) / 2**20:.1f} MiB in {time.monotonic() - start:.1f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
