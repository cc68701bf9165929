"""Bits a weight of a model file's matrices, as quant_quality.sh prints them: "LAYERS/ALL", the
stored bits per parameter of the transformer layers' matrices and of every matrix (embedding table
and classifier included), scales and block headers counted. Reads our .bin header or a GGUF file
(with the gguf package).
    python3 bench/bits_per_weight.py FILE"""
import json
import struct
import sys


def matrices(path):
    """(name, parameters, stored bytes, is a layer's) of every 2-D weight."""
    if path.endswith(".gguf"):
        import gguf  # only GGUF files need it
        for t in gguf.GGUFReader(path).tensors:
            if len(t.shape) == 2:
                yield t.name, int(t.n_elements), int(t.n_bytes), t.name.startswith("blk.")
        return
    with open(path, "rb") as f:
        f.seek(16)
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    size = {"q4": 0.5, "int8": 1, "fp16": 2, "bf16": 2, "fp32": 4}
    for t in header["tensors"]:
        if len(t["shape"]) == 2:
            elements = t["shape"][0] * t["shape"][1]
            params = 0 if t["name"].endswith(".scales") else elements  # scales: bytes, no weights
            yield t["name"], params, elements * size[t["dtype"]], t["name"].startswith("layers.")


def bits(rows):
    params = sum(r[1] for r in rows)
    return 8 * sum(r[2] for r in rows) / params


def main():
    rows = list(matrices(sys.argv[1]))
    print(f"{bits([r for r in rows if r[3]]):.2f}/{bits(rows):.2f}")


if __name__ == "__main__":
    main()
