#!/usr/bin/env python3
"""The error table of docs/model-format.md's q4 section: relative RMS error of the dequantized
matrices (wq, wk, wv, wo, w1, w2, w3 of every layer) of the shared kjv checkpoints, for llama.cpp's
Q4_0 rule, export.py's q4 (quantize_q4) at G = 32, 64, 128, an asymmetric Q4_1-like variant (for
comparison only; no file holds it) and int8. Also the quantizer's throughput on a random matrix.

  python3 test/tools/q4_error.py [--shared DIR] [--speed ROWSxCOLS]

The error of a set of matrices is sqrt(sum ||W - deq(W)||^2 / sum ||W||^2) over all of them (a
weighted mean: larger matrices count more). Needs numpy only.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import kuiper_format as kf  # noqa: E402
from checkpoints import open_safetensors_dir  # noqa: E402


def fp16(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def q4_0_llamacpp(w, group_size=32):
    """llama.cpp's quantize_row_q4_0_ref, dequantized: m = the value of largest |w| (sign kept),
    d = m / -8, code = min(15, (int8)(w * (1 / d) + 8.5)), stored d = fp16(d)."""
    g = np.asarray(w, np.float32).reshape(-1, group_size)
    m = np.take_along_axis(g, np.abs(g).argmax(axis=1)[:, None], axis=1)[:, 0]
    d = m / np.float32(-8.0)
    inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, np.float32(1), d))
    codes = np.minimum(15, np.trunc(g * inv[:, None] + np.float32(8.5)))
    return ((codes - 8) * fp16(d)[:, None]).reshape(w.shape)


def asymmetric(w, group_size=32, refits=3):
    """A Q4_1-like variant: w = code * d + m, codes 0..15, fp16 d and m (5.0 bits/weight at G = 32).
    Starts from llama.cpp's Q4_1 rule (m = min, d = (max - min) / 15), then `refits` times the joint
    least-squares (d, m) of the current codes, rounded to fp16, codes recomputed; keeps per group the
    pair of least squared error. refits=0 is the Q4_1 rule."""
    g = np.asarray(w, np.float32).reshape(-1, group_size)
    lo, hi = g.min(axis=1), g.max(axis=1)
    d, m = fp16((hi - lo) / np.float32(15)), fp16(lo)

    def codes_and_values(d, m):
        q = np.clip(np.rint((g - m[:, None]) / np.where(d == 0, 1, d)[:, None]), 0, 15)
        return q, q * d[:, None] + m[:, None]

    q, best = codes_and_values(d, m)
    best_err = ((best - g) ** 2).sum(axis=1)
    n = np.float64(group_size)
    for _ in range(refits):
        sq, sqq = q.sum(axis=1, dtype=np.float64), (q * q).sum(axis=1, dtype=np.float64)
        sw, swq = g.sum(axis=1, dtype=np.float64), (g * q).sum(axis=1, dtype=np.float64)
        det = n * sqq - sq * sq
        ok = det > 0
        d = fp16(np.where(ok, (n * swq - sq * sw) / np.where(ok, det, 1), d))
        m = fp16(np.where(ok, (sw - d * sq) / n, m))
        q, values = codes_and_values(d, m)
        err = ((values - g) ** 2).sum(axis=1)
        better = err < best_err
        best_err[better], best[better] = err[better], values[better]
    return best.reshape(w.shape)


METHODS = [  # label, bits per weight (scales included), group size, dequantized copy of w
    ("llama.cpp Q4_0 rule", 4.5, 32, q4_0_llamacpp),
    ("q4 (export.py) G=32", 4.5, 32, lambda w: kf.dequantize_q4(*kf.quantize_q4(w, 32))),
    ("asymmetric, Q4_1 rule (min/max) G=32", 5.0, 32, lambda w: asymmetric(w, 32, 0)),
    ("asymmetric, least-squares refit G=32", 5.0, 32, lambda w: asymmetric(w, 32)),
    ("q4 (export.py) G=64", 4.25, 64, lambda w: kf.dequantize_q4(*kf.quantize_q4(w, 64))),
    ("q4 (export.py) G=128", 4.125, 128, lambda w: kf.dequantize_q4(*kf.quantize_q4(w, 128))),
    ("int8 (export.py) G=32, fp16 scales", 8.5, 32,
     lambda w: kf.dequantize_int8(*kf.quantize_int8(w, 32, "fp16"))),
]


def matrices(model_dir):
    files = open_safetensors_dir(str(model_dir))
    return [(name, f.source(name).full()) for name, f in files.items()
            if name.endswith("_proj.weight") and ".layers." in name]


def relative_rms(pairs):
    num = sum(float(((w.astype(np.float64) - v) ** 2).sum()) for w, v in pairs)
    den = sum(float((w.astype(np.float64) ** 2).sum()) for w, _ in pairs)
    return np.sqrt(num / den)


def error_table(shared):
    columns = []  # (title, [matrices])
    for model in ("llama2-kjv", "qwen2-kjv", "llama3-kjv"):
        ms = matrices(Path(shared) / "models" / model)
        columns.append((f"{model} ({len(ms)} matrices)", [w for _, w in ms]))
        if model == "llama2-kjv":  # dim 288: only w2 (down_proj, rows of 768) has groups of 64 and 128
            columns.append(("llama2-kjv w2 only", [w for n, w in ms if "down_proj" in n]))
    print("| method | bits/weight | " + " | ".join(t for t, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for label, bits, g, fn in METHODS:
        cells = []
        for _, ws in columns:
            if any(w.shape[1] % g for w in ws):
                cells.append("n/a")
            else:
                cells.append(f"{relative_rms([(w, fn(w)) for w in ws]):.4f}")
        print(f"| {label} | {bits} | " + " | ".join(cells) + " |")


def speed(rows, cols):
    x = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02)
    step = kf.chunk_rows(x.shape)  # as export.py hands rows to quantize_q4
    for g in kf.GROUP_SIZES:
        start = time.perf_counter()
        for r0 in range(0, rows, step):
            kf.quantize_q4(x[r0:r0 + step], g)
        rate = x.size / (time.perf_counter() - start)
        print(f"quantize_q4 G={g} on [{rows}, {cols}]: {rate / 1e6:.1f} M weights/s, one core; "
              f"an 8B model's 6.98e9 q4 weights: {6.98e9 / rate / 60:.1f} min")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("KUIPER_SHARED_DIR", REPO.parent / "shared"))
    p.add_argument("--speed", default="4096x14336", help="ROWSxCOLS of the random matrix timed ('' skips)")
    args = p.parse_args()
    error_table(args.shared)
    if args.speed:
        speed(*map(int, args.speed.split("x")))


if __name__ == "__main__":
    main()
