"""Readers for what export.py converts, with numpy only: safetensors files, PyTorch zip checkpoints
(Meta's consolidated.*.pth, read without torch), and the few facts we need from tokenizer files."""
from __future__ import annotations

import collections
import json
import os
import pickle
import re
import struct
import zipfile

import numpy as np

from kuiper_format import ArraySource, ExportError


def load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror}") from None


# ----------------------------------------------------------------------------------------------
# safetensors

ST_DTYPES = {"F32": ("<f4", "f32"), "F16": ("<f2", "f16"), "BF16": ("<u2", "bf16"), "F64": ("<f8", "f64")}


class SafetensorsFile:
    """8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, raw data."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            (n,) = struct.unpack("<Q", head) if len(head) == 8 else (size,)
            if n > size - 8:
                raise ExportError(f"{path}: not a safetensors file (bad header length)")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ExportError(f"{path}: not a safetensors file (bad JSON header)") from None
        header.pop("__metadata__", None)
        self.data_start, self.tensors = 8 + n, header
        for name, t in header.items():
            begin, end = t["data_offsets"]
            if t["dtype"] not in ST_DTYPES:
                continue  # reported only if the tensor is used
            want = int(np.prod(t["shape"])) * np.dtype(ST_DTYPES[t["dtype"]][0]).itemsize
            if end - begin != want or self.data_start + end > size:
                raise ExportError(f"{path}: tensor {name} has inconsistent offsets (truncated file?)")

    def shape(self, name: str) -> tuple:
        return tuple(self.tensors[name]["shape"])

    def source(self, name: str, perm=None) -> ArraySource:
        t = self.tensors[name]
        if t["dtype"] not in ST_DTYPES:
            raise ExportError(f"{self.path}: tensor {name} has unsupported dtype {t['dtype']}")
        np_dtype, enc = ST_DTYPES[t["dtype"]]
        shape, offset = tuple(t["shape"]), self.data_start + t["data_offsets"][0]
        path = self.path

        def opener():
            if int(np.prod(shape)) == 0:
                return np.zeros(shape, np_dtype)
            return np.memmap(path, np_dtype, "r", offset, shape)

        return ArraySource(opener, shape, enc, perm)


def open_safetensors_dir(model_dir: str) -> dict[str, SafetensorsFile]:
    """{tensor name: file holding it} for a Hugging Face model directory."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        files = sorted(set(load_json(index).get("weight_map", {}).values()))
        for fn in files:
            if not os.path.isfile(os.path.join(model_dir, fn)):
                raise ExportError(f"{index} names {fn}, which is missing")
    elif os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        files = sorted(fn for fn in os.listdir(model_dir) if fn.endswith(".safetensors"))
    if not files:
        other = [fn for fn in os.listdir(model_dir) if fn.endswith((".bin", ".pth", ".pt"))]
        hint = " (PyTorch .bin weights are not read: re-save with safe_serialization=True)" if other else ""
        raise ExportError(f"{model_dir}: no *.safetensors weights found{hint}")
    out = {}
    for fn in files:
        st = SafetensorsFile(os.path.join(model_dir, fn))
        for name in st.tensors:
            out[name] = st
    return out


# ----------------------------------------------------------------------------------------------
# PyTorch zip checkpoints, without torch

TORCH_STORAGES = {"FloatStorage": ("<f4", "f32"), "HalfStorage": ("<f2", "f16"),
                  "BFloat16Storage": ("<u2", "bf16"), "DoubleStorage": ("<f8", "f64")}


class _Storage:
    def __init__(self, path, zf, info, np_dtype, enc, numel):
        self.path, self.zf, self.info = path, zf, info
        self.np_dtype, self.enc, self.numel = np_dtype, enc, numel

    def array(self) -> np.ndarray:
        """The whole storage, 1-D: a memmap when the zip entry is stored uncompressed (torch's way)."""
        itemsize = np.dtype(self.np_dtype).itemsize
        if self.info.file_size < self.numel * itemsize:
            raise ExportError(f"{self.path}: storage {self.info.filename} is truncated")
        if self.numel == 0:
            return np.zeros(0, self.np_dtype)
        if self.info.compress_type == zipfile.ZIP_STORED:
            with open(self.path, "rb") as f:
                f.seek(self.info.header_offset)
                local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ExportError(f"{self.path}: corrupt zip entry {self.info.filename}")
            n, m = struct.unpack("<HH", local[26:30])
            return np.memmap(self.path, self.np_dtype, "r", self.info.header_offset + 30 + n + m,
                             (self.numel,))
        return np.frombuffer(self.zf.read(self.info), self.np_dtype, self.numel)


class TorchTensor:
    """A tensor of a torch checkpoint, read only when asked: storage + offset + shape + strides."""

    def __init__(self, storage: _Storage, offset: int, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), tuple(shape), tuple(stride)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else 0
        if last >= max(storage.numel, 1) and all(self.shape):
            raise ExportError(f"{storage.path}: a tensor reaches past its storage {storage.info.filename}")

    def array(self) -> np.ndarray:
        base = self.storage.array()
        if not all(self.shape):
            return np.zeros(self.shape, base.dtype)
        item = base.dtype.itemsize
        return np.lib.stride_tricks.as_strided(base[self.offset:], self.shape,
                                               [s * item for s in self.stride], writeable=False)

    def source(self) -> ArraySource:
        return ArraySource(self.array, self.shape, self.storage.enc)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return TorchTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TorchTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a state dict, allowing only tensor rebuilding and plain containers."""

    SAFE = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch", "Size"): tuple}

    def __init__(self, f, path, zf, prefix):
        super().__init__(f)
        self.path, self.zf, self.prefix = path, zf, prefix
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in TORCH_STORAGES:
            return _StorageType(name)
        if (module, name) in self.SAFE:
            return self.SAFE[(module, name)]
        raise ExportError(f"{self.path}: unsupported object {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ExportError(f"{self.path}: unsupported persistent id {pid!r}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise ExportError(f"{self.path}: unsupported storage type {stype!r}")
        if key not in self.storages:
            entry = f"{self.prefix}data/{key}"
            try:
                info = self.zf.getinfo(entry)
            except KeyError:
                raise ExportError(f"{self.path}: storage {entry} is missing") from None
            np_dtype, enc = TORCH_STORAGES[stype.name]
            self.storages[key] = _Storage(self.path, self.zf, info, np_dtype, enc, int(numel))
        return self.storages[key]


def load_torch_checkpoint(path: str) -> dict[str, TorchTensor]:
    """The state dict of a zip-format torch.save file, tensors left unread."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ExportError(f"{path}: not a zip-format PyTorch checkpoint (legacy torch.save files "
                          "are not supported)") from None
    pkls = [n for n in zf.namelist() if n.endswith("data.pkl")]
    if len(pkls) != 1:
        raise ExportError(f"{path}: no data.pkl inside; not a PyTorch checkpoint")
    prefix = pkls[0][: -len("data.pkl")]
    order = prefix + "byteorder"
    if order in zf.namelist() and zf.read(order).strip() != b"little":
        raise ExportError(f"{path}: big-endian checkpoints are not supported")
    try:
        with zf.open(pkls[0]) as f:
            obj = _TorchUnpickler(f, path, zf, prefix).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: cannot read the checkpoint ({e})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ExportError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, TorchTensor)}


# ----------------------------------------------------------------------------------------------
# tokenizer facts

def _varint(b: bytes, i: int):
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7


def protobuf_fields(data: bytes):
    """The (field number, wire type, value) of a protobuf message's top level, in order: a varint's
    value as an int, other values as their bytes. ValueError for an unknown wire type or a message
    whose last field runs past its end (IndexError for a varint cut short)."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"bad wire type {wire}")
        yield field, wire, value
    if i != len(data):
        raise ValueError("truncated")


def sentencepiece_size(data: bytes) -> int:
    """Number of pieces of a sentencepiece ModelProto: the repeated field 1 at the top level."""
    return sum(field == 1 and wire == 2 for field, wire, _ in protobuf_fields(data))


TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+=* \d+$")
LLAMA3_SPECIAL_TOKENS = 256  # Meta's Llama 3 tokenizer adds 256 special ids after the ranks


def tokenizer_json_facts(data: dict):
    """(vocabulary size, whether the post-processor prepends a special token, or None if it has none)."""
    model = data.get("model") or {}
    vocab = model.get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else [len(vocab) - 1]
    ids += [t["id"] for t in data.get("added_tokens") or []]
    size = max(ids) + 1 if ids else 0

    def prepends(pp):
        if not isinstance(pp, dict):
            return None
        if pp.get("type") == "Sequence":
            found = [prepends(p) for p in pp.get("processors", [])]
            found = [f for f in found if f is not None]
            return any(found) if found else False
        if pp.get("type") == "TemplateProcessing":
            single = pp.get("single") or []
            return bool(single) and "SpecialToken" in single[0]
        if pp.get("type") in ("BertProcessing", "RobertaProcessing"):
            return True
        return False

    return size, prepends(data.get("post_processor"))


def tokenizer_file_facts(path: str):
    """(vocabulary size, prepends-BOS or None) of tokenizer.json, a sentencepiece model or a tiktoken
    rank file (Meta's Llama 3 tokenizer.model: ranks + its 256 special tokens)."""
    try:
        if path.endswith(".json"):
            return tokenizer_json_facts(load_json(path))
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror}") from None
    first = data.split(b"\n", 1)[0].strip()
    if TIKTOKEN_LINE.match(first):
        ranks = [int(line.split()[1]) for line in data.splitlines() if line.strip()]
        return max(ranks) + 1 + LLAMA3_SPECIAL_TOKENS, None
    try:
        return sentencepiece_size(data), None
    except (ValueError, IndexError):
        raise ExportError(f"{path}: neither tokenizer.json, a sentencepiece model nor a tiktoken file") from None


def find_tokenizer(dirs, explicit: str | None, names=("tokenizer.json", "tokenizer.model")) -> str | None:
    if explicit:
        if os.path.isdir(explicit):
            found = find_tokenizer([explicit], None, names)
            if not found:
                raise ExportError(f"{explicit}: no tokenizer.json or tokenizer.model in it")
            return found
        if not os.path.isfile(explicit):
            raise ExportError(f"{explicit}: no such tokenizer file")
        return explicit
    for d in dirs:
        for n in names:
            if os.path.isfile(os.path.join(d, n)):
                return os.path.join(d, n)
    return None


def embeddable_tokenizer(dirs, explicit: str | None) -> str | None:
    """The tokenizer file the runtime reads that export.py stores in the model file: a sentencepiece
    tokenizer.model (also where a tokenizer.json beside it is sentencepiece-style, e.g. TinyLlama's,
    which the runtime does not read), else a byte-level BPE tokenizer.json; Meta's tiktoken
    tokenizer.model (Llama 3) is not one (None then)."""
    candidates = [find_tokenizer(dirs, explicit)] if explicit else \
        [find_tokenizer(dirs, None, names=(n,)) for n in ("tokenizer.model", "tokenizer.json")]
    for path in candidates:
        if path is None:
            continue
        if path.endswith(".json"):
            model = (load_json(path).get("model") or {})
            if model.get("type") == "BPE" and not model.get("byte_fallback"):
                return path
            continue
        with open(path, "rb") as f:
            data = f.read()
        if TIKTOKEN_LINE.match(data.split(b"\n", 1)[0].strip()):
            continue
        try:
            sentencepiece_size(data)
        except (ValueError, IndexError):
            continue
        return path
    return None


CHAT_MARKERS = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama3"), ("<|user|>", "zephyr"),
                ("[INST]", "llama2"))
CHAT_TEMPLATES = ("llama2", "zephyr", "llama3", "chatml")


def chat_template_name(text) -> str | None:
    """Our name for a Jinja chat template (a string, or the list of named templates some files hold)."""
    if isinstance(text, list):
        named = {t.get("name"): t.get("template", "") for t in text if isinstance(t, dict)}
        text = named.get("default", next(iter(named.values()), ""))
    if not isinstance(text, str) or not text:
        return None
    for marker, name in CHAT_MARKERS:
        if marker in text:
            return name
    return ""
