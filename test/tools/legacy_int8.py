#!/usr/bin/env python3
"""Writers and readers of other projects' model files, for tests of our loader: llama2.c's version 1
(fp32) and version 2 (int8, read by its runq.c) files, and KuiperLLama's int8 file. They take the
weights tools/export.py reads (its loaders, so Meta's interleaved rotary order) and follow the
layouts of those projects' own export.py (docs/model-format.md has the tables).

  python3 test/tools/legacy_int8.py llama2c-v1|llama2c-v2|kuiperllama OUT
          (--hf HF_DIR | --meta-llama META_DIR | --random CONFIG_JSON [--seed S]) [--group-size N]

--group-size (int8 layouts only) defaults to 64, as both projects write; llama2.c's version2_export
halves it until it divides dim ("BACKOFF"), and so does llama2c-v2 here. Quantization is llama2.c's
quantize_q80 (groups over the flattened tensor), written afresh in numpy, independent of export.py's.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "tools"))

import export  # noqa: E402
import kuiper_format as kf  # noqa: E402
from kuiper_format import ExportError  # noqa: E402

FORMATS = ("llama2c-v1", "llama2c-v2", "kuiperllama")
AK42 = 0x616B3432  # llama2.c's magic: "ak42" as a uint32 (bytes "24ka" little-endian)
LLAMA2C_HEADER = 256
KUIPERLLAMA_HEADER = 32


# ----------------------------------------------------------------------------------------------
# layouts

def layout(fmt: str, c: dict) -> list[tuple[str, str]]:
    """What follows the header, in order: ("f32", name) is the fp32 tensor; ("q8", name) its int8
    codes (numel bytes) then its fp32 group scales (numel / group_size floats)."""
    layers = range(c["n_layers"])

    def every_layer(part):
        return [f"layers.{i}.{part}" for i in layers]

    norms = every_layer("attention_norm") + every_layer("ffn_norm") + ["norm"]
    matrices = [n for part in ("wq", "wk", "wv", "wo", "w1", "w2", "w3") for n in every_layer(part)]
    classifier = [] if c["tied_embeddings"] else ["output"]
    if fmt == "llama2c-v1":  # version1_export
        return [("f32", n) for n in norms + ["tok_embeddings"] + matrices + classifier]
    if fmt == "llama2c-v2":  # version2_export
        return [("f32", n) for n in norms] + [("q8", n) for n in ["tok_embeddings"] + matrices + classifier]
    if fmt == "kuiperllama":  # legacy_export_quant (model_export version 3)
        return [("q8", n) for n in matrices + classifier] + [("f32", n) for n in ["tok_embeddings"] + norms]
    raise ValueError(fmt)


def shapes(c: dict) -> dict:
    return export.expected_shapes(dict(c, head_dim=c["dim"] // c["n_heads"], attention_bias=False))


def header_size(fmt: str) -> int:
    return KUIPERLLAMA_HEADER if fmt == "kuiperllama" else LLAMA2C_HEADER


def file_size(fmt: str, c: dict, group_size: int = 0) -> int:
    """The exact size of the file of `fmt` for model shape `c`."""
    shp, size = shapes(c), header_size(fmt)
    for kind, name in layout(fmt, c):
        n = int(np.prod(shp[name]))
        size += 4 * n if kind == "f32" else n + 4 * (n // group_size)
    return size


def header(fmt: str, c: dict, group_size: int) -> bytes:
    dims = (c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"])
    tied = bool(c["tied_embeddings"])
    if fmt == "kuiperllama":  # eight int32, vocab negative for an unshared classifier, no padding
        return struct.pack("<8i", *dims, c["vocab_size"] if tied else -c["vocab_size"], c["max_seq_len"],
                           group_size)
    version = 1 if fmt == "llama2c-v1" else 2
    head = struct.pack("<Ii7iB", AK42, version, *dims, c["vocab_size"], c["max_seq_len"], int(tied))
    if version == 2:
        head += struct.pack("<i", group_size)  # at byte 37: llama2.c writes it unaligned
    return head + b"\0" * (LLAMA2C_HEADER - len(head))


# ----------------------------------------------------------------------------------------------
# quantization: llama2.c's quantize_q80

def quantize_q80(w: np.ndarray, group_size: int):
    """llama2.c's quantize_q80 in numpy: groups of group_size over the flattened tensor, in float32
    scale = max|w| / 127.0, codes torch.round(w / scale) (half to even), no clipping (|w / scale| <=
    127 always). An all-zero group divides 0 by 0, which torch then casts from NaN to int8
    (undefined); here it is 0. Returns (int8 codes, flattened; float32 scales)."""
    g = np.asarray(w, np.float32).reshape(-1, group_size)
    scale = np.abs(g).max(axis=1) / np.float32(127.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        quant = np.rint(g / scale[:, None])
    quant[np.isnan(quant)] = 0
    return quant.astype(np.int8).reshape(-1), scale.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# writing

def check_model(fmt: str, c: dict, group_size: int) -> int:
    """The group size to use; ExportError for what the format cannot express."""
    problems = kf.llama2c_problems(c)
    if problems:
        raise ExportError(f"{fmt} cannot express " + ", ".join(problems))
    if fmt == "llama2c-v1":
        return 0
    if group_size <= 0:
        raise ExportError(f"group size must be positive, not {group_size}")
    if fmt == "llama2c-v2":
        while c["dim"] % group_size:  # llama2.c's version2_export
            group_size //= 2
            print(f"legacy_int8.py: BACKOFF: reducing group size to {group_size} to fit dim", file=sys.stderr)
    for name in ("dim", "hidden_dim"):  # every matrix row is dim or hidden_dim long
        if c[name] % group_size:
            raise ExportError(f"{fmt}: group size {group_size} does not divide {name} {c[name]} "
                              "(groups would straddle rows)")
    return group_size


def write_f32(f, src) -> None:
    step = kf.chunk_rows(src.shape)
    try:
        for r0 in range(0, src.shape[0], step):
            f.write(np.ascontiguousarray(src.rows(r0, min(r0 + step, src.shape[0])), "<f4").tobytes())
    finally:
        src.close()


def write_q8(f, src, group_size: int) -> None:
    """The int8 codes of the whole tensor, then its fp32 scales; whole rows at a time (rows are a
    multiple of group_size long, so a chunk holds whole groups)."""
    step = kf.chunk_rows(src.shape)
    scales = []
    try:
        for r0 in range(0, src.shape[0], step):
            q, s = quantize_q80(src.rows(r0, min(r0 + step, src.shape[0])), group_size)
            f.write(q.tobytes())
            scales.append(s)
    finally:
        src.close()
    f.write(np.concatenate(scales).astype("<f4").tobytes())


def write_model(fmt: str, path: str, config: dict, tensors, group_size: int = 64) -> int:
    """Writes `tensors` (export.py's (name, Source) list) in the layout `fmt`; returns the group size."""
    group_size = check_model(fmt, config, group_size)
    by_name = dict(tensors)
    with kf.AtomicFile(path) as f:
        f.write(header(fmt, config, group_size))
        for kind, name in layout(fmt, config):
            if kind == "f32":
                write_f32(f, by_name[name])
            else:
                write_q8(f, by_name[name], group_size)
    return group_size


def load(args):
    """(config, tensors) as export.py loads them, fp32."""
    opts = SimpleNamespace(dtype="fp32", tokenizer=None, chat_template=None, max_seq_len=None, seed=args.seed)
    if args.hf:
        return export.hf_model(args.hf, opts)
    if args.meta_llama:
        return export.meta_model(args.meta_llama, opts)
    return export.random_model(args.random, opts)


# ----------------------------------------------------------------------------------------------
# reading (for tests): walks the layout as runq.c / KuiperLLama do, and wants the exact size

def read_model(path: str, fmt: str):
    """(header dict, {name: float32 array | (int8 codes [rows, cols], float32 scales [groups])})."""
    data = np.memmap(path, np.uint8, "r")
    if fmt == "kuiperllama":
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq, group_size = struct.unpack("<8i", bytes(data[:32]))
        head = {"tied_embeddings": vocab > 0}
        vocab = abs(vocab)
    else:
        magic, version, dim, hidden, n_layers, n_heads, n_kv, vocab, seq, shared = \
            struct.unpack("<Ii7iB", bytes(data[:37]))
        want = 1 if fmt == "llama2c-v1" else 2
        if magic != AK42 or version != want:
            raise ExportError(f"{path}: not a llama2.c version {want} file (magic {magic:#x}, version {version})")
        group_size = struct.unpack("<i", bytes(data[37:41]))[0] if want == 2 else 0
        head = {"tied_embeddings": bool(shared), "version": version}
    head.update(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
                vocab_size=vocab, max_seq_len=seq, group_size=group_size)
    if file_size(fmt, head, group_size) != len(data):
        raise ExportError(f"{path}: {len(data)} bytes, the {fmt} layout says {file_size(fmt, head, group_size)}")
    shp, pos, out = shapes(head), header_size(fmt), {}
    for kind, name in layout(fmt, head):
        n = int(np.prod(shp[name]))
        if kind == "f32":
            out[name] = np.frombuffer(data[pos:pos + 4 * n], "<f4").reshape(shp[name])
            pos += 4 * n
        else:
            codes = np.frombuffer(data[pos:pos + n], np.int8).reshape(shp[name])
            scales = np.frombuffer(data[pos + n:pos + n + 4 * (n // group_size)], "<f4")
            out[name] = (codes, scales)
            pos += n + 4 * (n // group_size)
    return head, out


# ----------------------------------------------------------------------------------------------
# CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="legacy_int8.py", description=__doc__.split("\n\n")[0])
    p.add_argument("format", choices=FORMATS)
    p.add_argument("out", metavar="OUT")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", metavar="HF_DIR")
    src.add_argument("--meta-llama", metavar="META_DIR")
    src.add_argument("--random", metavar="CONFIG_JSON")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    p.add_argument("--group-size", type=int, default=64, help="int8 layouts: values per scale (default 64)")
    args = p.parse_args(argv)
    start = time.monotonic()
    try:
        config, tensors = load(args)
        group_size = write_model(args.format, args.out, config, tensors, args.group_size)
    except ExportError as e:
        print(f"legacy_int8.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"legacy_int8.py: error: {e.filename or args.out}: {e.strerror}", file=sys.stderr)
        return 1
    groups = f", group size {group_size}" if group_size else ""
    print(f"legacy_int8.py: wrote {args.out}: {args.format}{groups}, {os.path.getsize(args.out) / 2**20:.1f} MiB "
          f"in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
