"""The kuiper model file (docs/model-format.md) and llama2.c's legacy v0 file: writers and readers.

Tensors are handed to the writers as *sources* (see `Source`): objects that know their shape and give
their rows as float32 on demand, so that a model far larger than memory streams through in chunks.
The chunks of all tensors are read, converted and quantized by a pool of threads (numpy releases
the GIL in its array operations), a bounded number of chunks ahead of the one being written, and
written in file order: the bytes do not depend on the number of threads. Only numpy is needed.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import json
import os
import struct
import sys
import threading
import time

import numpy as np

MAGIC = b"KUIPERLM"
VERSION = 1
ALIGN = 64
DTYPES = ("fp32", "fp16", "bf16", "int8", "q4")  # int8, q4: group-quantized (quantize_int8, quantize_q4)
GROUP_SIZES = (32, 64, 128)
SCALE_DTYPES = ("fp16", "fp32")
CHUNK_ELEMS = 1 << 24  # elements converted at a time (64 MiB of float32)
LOG_PROGRESS_BYTES = 1 << 30  # without a terminal, log progress lines only for outputs this large
CHUNKS_AHEAD = 2  # chunks in flight (being converted, or converted and not yet written) per thread


class ExportError(Exception):
    """A user-facing error: reported as one line, no traceback."""


# ----------------------------------------------------------------------------------------------
# dtype conversions

def bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    out = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def encode(x: np.ndarray, dtype: str, name: str = "") -> np.ndarray:
    """float32 array -> the little-endian array written for `dtype`."""
    if dtype == "fp32":
        return np.ascontiguousarray(x, dtype="<f4")
    if dtype == "fp16":
        with np.errstate(over="ignore"):
            y = np.ascontiguousarray(x, dtype="<f2")
        if not np.isfinite(y).all() and np.isfinite(x).all():
            raise ExportError(f"tensor {name} has values beyond the fp16 range; use --dtype bf16 or fp32")
        return y
    if dtype == "bf16":
        return f32_to_bf16(x)
    raise ExportError(f"unknown dtype {dtype}")


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored array of `dtype` (bf16 as uint16) -> float32."""
    if dtype == "bf16":
        return bf16_to_f32(raw)
    return raw.astype(np.float32)


ITEMSIZE = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
NP_STORED = {"fp32": "<f4", "fp16": "<f2", "bf16": "<u2", "int8": "i1", "q4": "u1"}


def tensor_nbytes(dtype: str, shape) -> int:
    """Bytes of a stored tensor: q4 packs two 4-bit codes a byte (its logical shape [rows, cols])."""
    n = int(np.prod(shape))
    return n // 2 if dtype == "q4" else n * ITEMSIZE[dtype]


def stored_shape(dtype: str, shape) -> tuple:
    """Shape of the array a tensor's bytes hold: q4 [rows, cols] is uint8 [rows, cols / 2]."""
    return (shape[0], shape[1] // 2) if dtype == "q4" else tuple(shape)


# ----------------------------------------------------------------------------------------------
# int8 group quantization

def quantize_int8(x: np.ndarray, group_size: int, scale_dtype: str = "fp32", name: str = ""):
    """Symmetric int8 codes of float32 rows `x` [r, c], in groups of `group_size` consecutive values
    along each row, and one scale per group ([r, c // group_size], as the little-endian `scale_dtype`
    array that is stored). Per group, in float32: scale = max|w| / 127 (rounded to fp16 first with
    scale_dtype fp16); q = round-half-to-even(w / scale), a true division, clipped to [-127, 127]; an
    all-zero group (or one whose fp16 scale underflows to 0) gets q = 0. Dequantized: q * scale."""
    r, c = x.shape
    g = np.ascontiguousarray(x, dtype=np.float32).reshape(r, c // group_size, group_size)
    work = np.abs(g)  # reused below for the quotients: one float32 temporary, not three
    amax = work.max(axis=2)
    if not np.isfinite(amax).all():
        raise ExportError(f"tensor {name} has non-finite values (inf or NaN); int8 cannot hold them")
    scale = amax / np.float32(127.0)
    if scale_dtype == "fp16":
        with np.errstate(over="ignore"):
            stored = scale.astype("<f2")
        if not np.isfinite(stored).all():
            raise ExportError(f"tensor {name} has values beyond what fp16 scales can express "
                              f"(max |w| {float(amax.max()):g}); use --scale-dtype fp32")
        scale = stored.astype(np.float32)
    elif scale_dtype == "fp32":
        stored = scale.astype("<f4")
    else:
        raise ExportError(f"unknown scale dtype {scale_dtype}")
    q = np.divide(g, np.where(scale == 0, np.float32(1.0), scale)[..., None], out=work)
    np.rint(q, out=q)
    np.clip(q, -127, 127, out=q)
    return q.astype(np.int8).reshape(r, c), stored


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 [r, c] of int8 codes [r, c] and their group scales [r, c / group_size]."""
    r, c = codes.shape
    groups = scales.shape[1]
    w = np.asarray(codes, np.float32).reshape(r, groups, c // groups) * \
        np.asarray(scales, np.float32)[..., None]
    return w.reshape(r, c)

# ----------------------------------------------------------------------------------------------
# q4 (4-bit) group quantization

Q4_BLOCK = 32  # values per block of 16 bytes (llama.cpp's Q4_0 nibble order)
Q4_STEPS = 4  # scale candidates d = m / (k / Q4_STEPS - 8), k = -Q4_STEPS..Q4_STEPS
Q4_REFITS = 2  # least-squares refits of the scale after the candidates
Q4_WORK_ELEMS = 1 << 20  # values searched at a time (the results do not depend on it): ~250 numpy calls
# a piece, whose GIL hand-offs limit how threads scale: a 4-layer Llama-3.1-8B-shaped q4 export on 16
# threads took 21.2 s with pieces of 2^18, 9.1 s with 2^20, 8.4 s with 2^21 (2^21 is ~15% slower on
# one thread of the 2-core development machine; 2^20 as fast as 2^18)


def _fp16_scale(d: np.ndarray) -> np.ndarray:
    """float32 scales rounded to fp16 (nearest even) and widened back."""
    with np.errstate(over="ignore"):
        return d.astype("<f2").astype(np.float32)


def _q4_search(g: np.ndarray) -> np.ndarray:
    """The fp16 scale (as float32) of each row of groups `g` [n, G] with the least squared error
    sum((w - d * q)^2), q = clip(rint(w / d), -8, 7), among: d = fp16(m / (k / 8 - 8)) for k = -8..8,
    m the group's value of largest |w| (k = 0 is llama.cpp's Q4_0 scale), then Q4_REFITS times the
    least-squares scale fp16(sum(w q) / sum(q q)) of the codes of the candidate with the least
    least-squares error (then of the previous refit's codes). Ties keep the earlier one. The errors
    compared are computed from sums over the group (see evaluate); a final comparison of summed
    squared residuals makes sure that no group ends up worse than with llama.cpp's scale (k = 0)."""
    m = np.take_along_axis(g, np.abs(g).argmax(axis=1)[:, None], axis=1)[:, 0]
    ww = np.einsum("ij,ij->i", g, g).astype(np.float64)
    q = np.empty_like(g)
    one = np.float32(1.0)

    def codes(d):
        np.divide(g, np.where(d == 0, one, d)[:, None], out=q)
        np.rint(q, out=q)
        return np.clip(q, -8, 7, out=q)

    def evaluate(d):
        """(squared error of the pair (d, codes of d), sum(w q), sum(q q)) per group, in float64 from
        float32 sums: the error is sum(w w) - 2 d sum(w q) + d d sum(q q), which loses digits when
        the error is small next to sum(w w) (a group with an outlier)."""
        codes(d)
        wq = np.einsum("ij,ij->i", g, q).astype(np.float64)
        qq = np.einsum("ij,ij->i", q, q).astype(np.float64)
        return ww - d * (2.0 * wq - d * qq), wq, qq

    def residual(d):
        """sum((w - d q)^2) per group, summed as such (no cancellation)."""
        r = np.multiply(codes(d), d[:, None], out=q)
        np.subtract(g, r, out=r)
        return np.einsum("ij,ij->i", r, r).astype(np.float64)

    ks = range(-Q4_STEPS, Q4_STEPS + 1)
    scales = np.empty((len(ks) + Q4_REFITS, g.shape[0]), np.float32)
    errs = np.empty(scales.shape)
    fits = np.empty((len(ks), g.shape[0]))  # least-squares errors of the candidates' codes
    wqs, qqs = np.empty(fits.shape), np.empty(fits.shape)
    for i, k in enumerate(ks):
        scales[i] = _fp16_scale(m / np.float32(k / Q4_STEPS - 8.0))
        errs[i], wqs[i], qqs[i] = evaluate(scales[i])
        np.maximum(qqs[i], 1.0, out=qqs[i])  # qq is 0 only with wq 0 (the refit's scale is then 0)
        fits[i] = ww - wqs[i] * wqs[i] / qqs[i]
    start = fits.argmin(axis=0)[None]
    wq, qq = np.take_along_axis(wqs, start, 0)[0], np.take_along_axis(qqs, start, 0)[0]
    for i in range(len(ks), len(scales)):
        d = _fp16_scale((wq / np.maximum(qq, 1.0)).astype(np.float32))
        d[~np.isfinite(d)] = 0  # beyond fp16: not a candidate (scale 0 never beats the others)
        scales[i] = d
        errs[i], wq, qq = evaluate(d)
    best = np.take_along_axis(scales, errs.argmin(axis=0)[None], 0)[0]
    q4_0 = scales[Q4_STEPS]  # k = 0; where the choice is not exactly as good, Q4_0's scale stays
    return np.where(residual(best) <= residual(q4_0), best, q4_0)


def quantize_q4(x: np.ndarray, group_size: int, name: str = ""):
    """4-bit codes of float32 rows `x` [r, c], packed two a byte ([r, c // 2] uint8, llama.cpp's Q4_0
    nibble order: in each block of 32 values of a row, byte j holds value j in its low nibble and value
    j + 16 in its high nibble), and one fp16 scale per group of `group_size` consecutive values of a
    row ([r, c // group_size]). The value is (code - 8) * scale. Per group the scale is the fp16 one
    of least squared error that _q4_search finds; the codes are then computed from that rounded
    scale: code = clip(round-half-to-even(w / scale), -8, 7) + 8, a true float32 division; an
    all-zero group (or one whose scale rounds to 0) gets scale 0 and codes 8."""
    r, c = x.shape
    if group_size % Q4_BLOCK or c % group_size:
        raise ExportError(f"tensor {name}: q4 needs rows of whole groups of a multiple of {Q4_BLOCK} "
                          f"values (group size {group_size}, rows of {c})")
    g = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, group_size)
    amax = np.abs(g).max(axis=1)
    if not np.isfinite(amax).all():
        raise ExportError(f"tensor {name} has non-finite values (inf or NaN); q4 cannot hold them")
    if amax.max(initial=0) > np.float32(65504.0 * 7):
        raise ExportError(f"tensor {name} has values beyond what fp16 scales can express "
                          f"(max |w| {float(amax.max()):g}); use --dtype int8 --scale-dtype fp32")
    scales = np.empty(g.shape[0], np.float32)
    codes = np.empty(g.shape, np.uint8)
    step = max(1, Q4_WORK_ELEMS // group_size)
    for i in range(0, g.shape[0], step):
        part = g[i:i + step]
        d = _q4_search(part)
        q = np.divide(part, np.where(d == 0, np.float32(1.0), d)[:, None])
        np.rint(q, out=q)
        np.clip(q, -8, 7, out=q)
        q += 8
        codes[i:i + step] = q
        scales[i:i + step] = d
    blocks = codes.reshape(r, c // Q4_BLOCK, 2, Q4_BLOCK // 2)
    packed = blocks[:, :, 0, :] | (blocks[:, :, 1, :] << 4)
    return packed.reshape(r, c // 2), scales.astype("<f2").reshape(r, c // group_size)


def unpack_q4(packed: np.ndarray) -> np.ndarray:
    """The codes 0..15 (uint8 [r, 2 * packed cols]) of packed q4 rows."""
    r, half = packed.shape
    p = np.asarray(packed, np.uint8).reshape(r, half // (Q4_BLOCK // 2), 1, Q4_BLOCK // 2)
    return np.concatenate([p & 15, p >> 4], axis=2).reshape(r, 2 * half)


def dequantize_q4(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 [r, c] of packed q4 codes [r, c / 2] and their group scales [r, c / group_size]."""
    codes = unpack_q4(packed)
    r, c = codes.shape
    groups = scales.shape[1]
    w = (codes.astype(np.float32) - np.float32(8.0)).reshape(r, groups, c // groups) * \
        np.asarray(scales, np.float32)[..., None]
    return w.reshape(r, c)


# ----------------------------------------------------------------------------------------------
# tensor sources

class Source:
    """A tensor to write: `shape`, and `rows(r0, r1)` giving float32 rows r0..r1 (elements for 1-D)."""

    shape: tuple

    def rows(self, r0: int, r1: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Drop whatever was opened to read the tensor (called once it is written)."""

    def full(self) -> np.ndarray:
        return self.rows(0, self.shape[0])


class ArraySource(Source):
    """A stored array, opened lazily by `opener()` (e.g. a memmap), with encoding 'f32'|'f16'|'bf16'|'f64'
    and an optional row permutation `perm` (row i of the result is row perm[i] of the array)."""

    def __init__(self, opener, shape, encoding: str, perm: np.ndarray | None = None):
        self.opener, self.shape, self.encoding, self.perm = opener, tuple(shape), encoding, perm
        self._arr = None
        self._lock = threading.Lock()  # chunks of one tensor are read by several threads

    def array(self) -> np.ndarray:
        with self._lock:
            if self._arr is None:
                self._arr = self.opener()
            return self._arr

    def rows(self, r0, r1):
        idx = slice(r0, r1) if self.perm is None else self.perm[r0:r1]
        raw = self.array()[idx]
        if self.encoding == "bf16":
            return bf16_to_f32(raw)
        return np.asarray(raw, dtype=np.float32)

    def close(self):
        with self._lock:
            self._arr = None


class ConcatSource(Source):
    """Pieces joined along `axis` (0 or 1), as model-parallel shards are."""

    def __init__(self, parts, axis: int):
        self.parts, self.axis = parts, axis
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        self.shape = tuple(shape)

    def rows(self, r0, r1):
        if self.axis == 1:
            return np.concatenate([p.rows(r0, r1) for p in self.parts], axis=1)
        out, start = [], 0
        for p in self.parts:
            n = p.shape[0]
            lo, hi = max(r0, start), min(r1, start + n)
            if lo < hi:
                out.append(p.rows(lo - start, hi - start))
            start += n
        return np.concatenate(out, axis=0)

    def close(self):
        for p in self.parts:
            p.close()


class RandomSource(Source):
    """N(0, std) values, reproducible from (seed, index) and independent of anything else. Each call
    draws from a generator seeded with (seed, index, r0), so the values depend on where the writers'
    chunks start (chunk_rows): asked for the same chunks, any thread gives the same rows."""

    def __init__(self, shape, seed: int, index: int, std: float = 0.02):
        self.shape, self.seed, self.index, self.std = tuple(shape), seed, index, std

    def rows(self, r0, r1):
        rng = np.random.default_rng([self.seed, self.index, r0])
        x = rng.standard_normal((r1 - r0,) + self.shape[1:], dtype=np.float32)
        x *= np.float32(self.std)
        return x


class ConstSource(Source):
    def __init__(self, shape, value: float):
        self.shape, self.value = tuple(shape), value

    def rows(self, r0, r1):
        return np.full((r1 - r0,) + self.shape[1:], self.value, dtype=np.float32)


def chunk_rows(shape) -> int:
    per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return max(1, CHUNK_ELEMS // max(per_row, 1))


def row_chunks(shape) -> list[tuple[int, int]]:
    """(r0, r1) of the chunks a tensor is read, converted and written in (chunk_rows rows each)."""
    step = chunk_rows(shape)
    return [(r0, min(r0 + step, shape[0])) for r0 in range(0, shape[0], step)]


# ----------------------------------------------------------------------------------------------
# threads

def default_threads() -> int:
    """The CPUs this process may run on (os.process_cpu_count, else the affinity mask, else
    os.cpu_count)."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@contextlib.contextmanager
def ordered_results(tasks, threads: int):
    """An iterator of task() for the callables `tasks`, in their order. With threads > 1 the tasks run
    on a pool of that many threads, at most CHUNKS_AHEAD * threads of them submitted and not yet taken
    (which bounds memory); a task's exception is raised when its result is taken. Leaving the block
    cancels the tasks not started and waits for the running ones."""
    if threads <= 1:
        yield (task() for task in tasks)
        return
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="export")

    def results():
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.submit(task))
            if len(pending) >= CHUNKS_AHEAD * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    try:
        yield results()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def chunk_tasks(tensors: list[tuple[str, Source]], convert):
    """convert(i, r0, r1) for every chunk of every tensor i, in file order (as callables)."""
    for i, (_, src) in enumerate(tensors):
        for r0, r1 in row_chunks(src.shape):
            yield functools.partial(convert, i, r0, r1)


# ----------------------------------------------------------------------------------------------
# progress and atomic output

class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal; otherwise a line every 10%
    for large outputs."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = max(total, 1), 0, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = self.last = time.monotonic()
        self.last_decile = -1

    def advance(self, n: int, label: str) -> None:
        if not self.enabled:
            return
        self.done += n
        frac = min(self.done / self.total, 1.0)
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1 and self.done < self.total:
                return
            self.last = now
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {frac * 100:5.1f}% {self.done / 2**20:,.0f}/"
                             f"{self.total / 2**20:,.0f} MiB {label[:40]:<40}")
            sys.stderr.flush()
        else:
            decile = int(frac * 10)
            if decile > self.last_decile and self.total >= LOG_PROGRESS_BYTES:
                self.last_decile = decile
                sys.stderr.write(f"export: {frac * 100:3.0f}% ({self.done / 2**20:,.0f}/"
                                 f"{self.total / 2**20:,.0f} MiB, {now - self.start:.1f} s)\n")

    def finish(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


class AtomicFile:
    """Writes to a temporary file beside `path`, renamed over it only once complete."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp{os.getpid()}"

    def __enter__(self):
        try:
            self.f = open(self.tmp, "wb")
        except OSError as e:
            raise ExportError(f"cannot write {self.path}: {e.strerror}") from None
        return self.f

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
            self.f.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
        return False


# ----------------------------------------------------------------------------------------------
# kuiper format

Q4_INT8_TENSORS = ("tok_embeddings", "output")  # int8 in a q4 file


def tensor_dtype(name: str, shape, dtype: str) -> str:
    """Matrices take the model dtype, but for the int8 embedding table and classifier of a q4 model;
    vectors (norms, biases) are always fp32."""
    if len(shape) < 2:
        return "fp32"
    return "int8" if dtype == "q4" and name in Q4_INT8_TENSORS else dtype


SCALES_SUFFIX = ".scales"


def file_entries(config: dict, tensors: list[tuple[str, Source]], scale_dtype: str = "fp16"):
    """(name, dtype, shape) of every tensor stored, in file order: an int8 or q4 matrix NAME is two,
    NAME (the codes; shape [rows, cols] also for q4's packed ones) and NAME.scales ([rows, cols /
    group_size] in `scale_dtype`, always fp16 in a q4 file). Raises ExportError for a matrix whose rows
    the group size does not divide."""
    out = []
    for name, src in tensors:
        dt = tensor_dtype(name, src.shape, config["dtype"])
        out.append((name, dt, tuple(src.shape)))
        if dt in ("int8", "q4"):
            g = config["group_size"]
            rows, cols = src.shape
            if cols % g:
                fits = [str(n) for n in GROUP_SIZES if cols % n == 0]
                hint = f"--group-size {' or '.join(fits)} would" if fits else \
                    f"none of {', '.join(map(str, GROUP_SIZES))} does"
                raise ExportError(f"tensor {name} {list(src.shape)}: group size {g} does not divide its "
                                  f"rows of {cols} values ({hint})")
            out.append((name + SCALES_SUFFIX, "fp16" if config["dtype"] == "q4" else scale_dtype,
                        (rows, cols // g)))
    return out


def tokenizer_kind(data: bytes) -> str:
    """"tokenizer.json" for a JSON object, else "sentencepiece" (a tokenizer.model)."""
    return "tokenizer.json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "sentencepiece"


def plan(config: dict, tensors: list[tuple[str, Source]], scale_dtype: str = "fp16", tokenizer: bytes | None = None):
    """Header bytes (magic .. padding to the data start), {stored name: offset}, and the data size;
    the embedded tokenizer's bytes, if any, follow the tensors (offset under the name None)."""
    entries, offsets, off = [], {}, 0
    for name, dt, shape in file_entries(config, tensors, scale_dtype):
        off = -(-off // ALIGN) * ALIGN
        entries.append({"name": name, "dtype": dt, "shape": list(shape), "offset": off})
        offsets[name] = off
        off += tensor_nbytes(dt, shape)
    head = {"config": config, "tensors": entries}
    if tokenizer is not None:
        off = -(-off // ALIGN) * ALIGN
        head["tokenizer"] = {"kind": tokenizer_kind(tokenizer), "offset": off, "bytes": len(tokenizer)}
        offsets[None] = off
        off += len(tokenizer)
    header = json.dumps(head, separators=(",", ":")).encode()
    pre = MAGIC + struct.pack("<II", VERSION, 0) + struct.pack("<Q", len(header)) + header
    pre += b"\0" * (-len(pre) % ALIGN)
    return pre, offsets, off


def write_kuiper(path: str, config: dict, tensors: list[tuple[str, Source]], show_progress=True,
                 scale_dtype: str = "fp16", threads: int | None = None, tokenizer: bytes | None = None) -> None:
    """The kuiper file of `tensors` (float32 sources); with config dtype int8 the matrices are
    quantized in groups of config["group_size"], their scales stored as `scale_dtype`; with q4 the
    matrices are q4 and the embedding table and classifier int8, all scales fp16. The chunks are
    converted by `threads` threads (default_threads() if None); the file is the same for any number.
    `tokenizer`: the bytes of a tokenizer.model or tokenizer.json to embed after the tensors."""
    if config["dtype"] == "q4":
        scale_dtype = "fp16"
    pre, offsets, total = plan(config, tensors, scale_dtype, tokenizer)
    dtypes = [tensor_dtype(name, src.shape, config["dtype"]) for name, src in tensors]
    group = config.get("group_size")

    def convert(i, r0, r1):
        """(stored bytes, scales or None) of rows r0..r1 of tensor i."""
        name, src = tensors[i]
        x = src.rows(r0, r1)
        if dtypes[i] == "q4":
            return quantize_q4(x, group, name)
        if dtypes[i] == "int8":
            return quantize_int8(x, group, scale_dtype, name)
        return encode(x, dtypes[i], name), None

    progress = Progress(total, show_progress)
    with AtomicFile(path) as f, \
            ordered_results(chunk_tasks(tensors, convert), default_threads() if threads is None else threads) \
            as results:
        f.write(pre)

        def pad_to(off):
            f.write(b"\0" * (off - (f.tell() - len(pre))))

        try:
            for (name, src), dt in zip(tensors, dtypes):
                pad_to(offsets[name])
                scales = []
                for _ in row_chunks(src.shape):
                    data, s = next(results)
                    f.write(memoryview(data).cast("B"))
                    progress.advance(data.nbytes + (0 if s is None else s.nbytes), name)
                    if s is not None:
                        scales.append(s)
                src.close()
                if dt in ("int8", "q4"):  # the scales right after the codes
                    pad_to(offsets[name + SCALES_SUFFIX])
                    f.write(memoryview(np.ascontiguousarray(np.concatenate(scales, axis=0))).cast("B"))
            if tokenizer is not None:
                pad_to(offsets[None])
                f.write(tokenizer)
        finally:
            for _, src in tensors:
                src.close()
    progress.finish()


def read_kuiper(path: str, decode_tensors: bool = True):
    """(config, {name: array}) of a kuiper file: float32 arrays (int8 and q4 matrices dequantized with
    their scales, which are then not listed), or every stored tensor as it is (memmaps, NAME.scales
    included; a q4 NAME [rows, cols] as its packed bytes, uint8 [rows, cols / 2]) with
    decode_tensors=False. For tests and tools; the C++ runtime is the real reader."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:8] != MAGIC:
            raise ExportError(f"{path}: not a kuiper model file")
        version, _ = struct.unpack("<II", head[8:16])
        (hlen,) = struct.unpack("<Q", head[16:24])
        header = json.loads(f.read(hlen))
    data_start = -(-(24 + hlen) // ALIGN) * ALIGN
    size = os.path.getsize(path)
    raw, dtypes = {}, {}
    for t in header["tensors"]:
        end = data_start + t["offset"] + tensor_nbytes(t["dtype"], t["shape"])
        if end > size:
            raise ExportError(f"{path}: truncated (tensor {t['name']} ends at {end}, file has {size})")
        raw[t["name"]] = np.memmap(path, NP_STORED[t["dtype"]], "r", data_start + t["offset"],
                                   stored_shape(t["dtype"], t["shape"]))
        dtypes[t["name"]] = t["dtype"]
    header["config"]["_version"] = version
    if not decode_tensors:
        return header["config"], raw
    out = {}
    for name, arr in raw.items():
        if dtypes[name] == "int8":
            out[name] = dequantize_int8(arr, raw[name + SCALES_SUFFIX])
        elif dtypes[name] == "q4":
            out[name] = dequantize_q4(arr, raw[name + SCALES_SUFFIX])
        elif not (name.endswith(SCALES_SUFFIX) and dtypes.get(name[: -len(SCALES_SUFFIX)]) in ("int8", "q4")):
            out[name] = decode(arr, dtypes[name])
    return header["config"], out


# ----------------------------------------------------------------------------------------------
# llama2.c legacy v0

def legacy_order(n_layers: int, tied: bool) -> list[str]:
    names = ["tok_embeddings"]
    for part in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
        names += [f"layers.{l}.{part}" for l in range(n_layers)]
    names += ["norm", "freq_cis_real", "freq_cis_imag"]
    if not tied:
        names.append("output")
    return names


def legacy_freqs(head_dim: int, max_seq_len: int, theta: float = 10000.0):
    """llama2.c's rope table (cos, sin), [max_seq_len, head_dim/2], computed in float32 as its model.py."""
    freqs = 1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32)[: head_dim // 2]
                                         / np.float32(head_dim)))
    angles = np.outer(np.arange(max_seq_len, dtype=np.float32), freqs.astype(np.float32))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def llama2c_problems(c: dict) -> list[str]:
    """What a llama2.c-style header cannot say (it hard-codes the rest): the model's departures from
    head_dim = dim / n_heads, no biases, no rope scaling, rope theta 10000 and norm eps 1e-5."""
    problems = []
    if c["head_dim"] * c["n_heads"] != c["dim"]:
        problems.append(f"head_dim {c['head_dim']} != dim / n_heads")
    if c["attention_bias"]:
        problems.append("q/k/v biases")
    if c["rope_scaling"]:
        problems.append(f"rope scaling {c['rope_scaling']['type']}")
    if c["rope_theta"] != 10000.0:
        problems.append(f"rope_theta {c['rope_theta']:g} (only 10000)")
    if abs(c["norm_eps"] - 1e-5) > 1e-12:
        problems.append(f"norm_eps {c['norm_eps']:g} (only 1e-05)")
    return problems


def check_legacy(config: dict) -> None:
    """llama2.c v0 files hold fp32 models that llama2c_problems finds nothing wrong with."""
    problems = [] if config["dtype"] == "fp32" else [f"dtype {config['dtype']} (only fp32)"]
    problems += llama2c_problems(config)
    if problems:
        raise ExportError("--legacy (llama2.c v0) cannot express " + ", ".join(problems))


def write_legacy(path: str, config: dict, tensors: list[tuple[str, Source]], show_progress=True,
                 threads: int | None = None) -> None:
    check_legacy(config)
    c = config
    by_name = dict(tensors)
    cos, sin = legacy_freqs(c["head_dim"], c["max_seq_len"])
    by_name["freq_cis_real"] = ArraySource(lambda: cos, cos.shape, "f32")
    by_name["freq_cis_imag"] = ArraySource(lambda: sin, sin.shape, "f32")
    order = legacy_order(c["n_layers"], c["tied_embeddings"])
    vocab = c["vocab_size"] if c["tied_embeddings"] else -c["vocab_size"]
    head = struct.pack("<7i", c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"],
                       vocab, c["max_seq_len"])
    items = [(name, by_name[name]) for name in order]

    def convert(i, r0, r1):
        return encode(items[i][1].rows(r0, r1), "fp32", items[i][0])

    progress = Progress(sum(int(np.prod(src.shape)) * 4 for _, src in items), show_progress)
    with AtomicFile(path) as f, \
            ordered_results(chunk_tasks(items, convert), default_threads() if threads is None else threads) \
            as results:
        f.write(head)
        try:
            for name, src in items:
                for _ in row_chunks(src.shape):
                    data = next(results)
                    f.write(memoryview(data).cast("B"))
                    progress.advance(data.nbytes, name)
                src.close()
        finally:
            for _, src in items:
                src.close()
    progress.finish()


def read_legacy(path: str):
    """(config, {name: float32 array}) of a llama2.c v0 file, read the way llama2.c's run.c does."""
    raw = np.memmap(path, np.uint8, "r")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack("<7i", bytes(raw[:28]))
    tied = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    shapes = {"tok_embeddings": (vocab, dim), "norm": (dim,), "freq_cis_real": (seq, hd // 2),
              "freq_cis_imag": (seq, hd // 2), "output": (vocab, dim)}
    per_layer = {"attention_norm": (dim,), "wq": (n_heads * hd, dim), "wk": (n_kv * hd, dim),
                 "wv": (n_kv * hd, dim), "wo": (dim, n_heads * hd), "ffn_norm": (dim,),
                 "w1": (hidden, dim), "w2": (dim, hidden), "w3": (hidden, dim)}
    pos, out = 28, {}
    for name in legacy_order(n_layers, tied):
        shape = shapes.get(name) or per_layer[name.split(".")[-1]]
        n = int(np.prod(shape)) * 4
        out[name] = np.frombuffer(raw[pos:pos + n], "<f4").reshape(shape)
        pos += n
    if pos != len(raw):
        raise ExportError(f"{path}: {len(raw)} bytes, the v0 layout says {pos}")
    config = {"dim": dim, "hidden_dim": hidden, "n_layers": n_layers, "n_heads": n_heads,
              "n_kv_heads": n_kv, "vocab_size": vocab, "max_seq_len": seq, "tied_embeddings": tied}
    return config, out
