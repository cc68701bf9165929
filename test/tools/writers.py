"""Test helpers that write checkpoints without torch: safetensors files and zip-format torch.save
state dicts (the layout of Meta's consolidated.*.pth), for the shapes and cases the shared models lack."""
import json
import struct
import zipfile

import numpy as np

ST_NAMES = {"<f4": "F32", "<f2": "F16", "<u2": "BF16"}
TORCH_NAMES = {"<f4": "FloatStorage", "<f2": "HalfStorage", "<u2": "BFloat16Storage"}


def write_safetensors(path, tensors: dict) -> None:
    """tensors: name -> array of dtype <f4, <f2 or <u2 (bfloat16 bits)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        header[name] = {"dtype": ST_NAMES[arr.dtype.str], "shape": list(arr.shape),
                        "data_offsets": [off, off + arr.nbytes]}
        blobs.append(arr.tobytes())
        off += arr.nbytes
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


# ---- pickle protocol 2, written opcode by opcode (so no torch classes are needed)

def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def write_torch_state_dict(path, storages: dict, tensors: dict, prefix="consolidated.00") -> None:
    """storages: key -> 1-D array (<f4, <f2 or <u2 for bfloat16); tensors: name -> (storage key,
    offset, shape, stride) in elements, as torch's _rebuild_tensor_v2 takes them."""
    pkl = b"\x80\x02}("
    for name, (key, offset, shape, stride) in tensors.items():
        data = storages[key]
        pid = _tuple([_str("storage"), _global("torch", TORCH_NAMES[data.dtype.str]), _str(key), _str("cpu"),
                      _int(data.size)]) + b"Q"
        args = _tuple([pid, _int(offset), _tuple(map(_int, shape)), _tuple(map(_int, stride)), b"\x89",
                       _global("collections", "OrderedDict") + b")R"])
        pkl += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    pkl += b"u."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"{prefix}/data/{key}", np.ascontiguousarray(data).tobytes())
        z.writestr(f"{prefix}/version", "3\n")


def contiguous_state_dict(tensors: dict):
    """(storages, tensors) for write_torch_state_dict: one storage per tensor, row-major."""
    storages, entries = {}, {}
    for i, (name, arr) in enumerate(tensors.items()):
        storages[str(i)] = np.ascontiguousarray(arr).reshape(-1)
        stride = [int(np.prod(arr.shape[d + 1:])) for d in range(arr.ndim)]
        entries[name] = (str(i), 0, list(arr.shape), stride)
    return storages, entries
