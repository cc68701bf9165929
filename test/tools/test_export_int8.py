"""Tests of export.py --dtype int8, and of test/tools/legacy_int8.py (llama2.c's version 1/2 and
KuiperLLama's int8 files), whose codes and scales must equal our export's bit for bit."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_export

import kuiper_format as kf
import legacy_int8

WRITER = Path(__file__).resolve().parent / "legacy_int8.py"
# Rows of every matrix a multiple of 64: dim 128, hidden 384, head_dim 32 (wk/wv: 64 rows of 128).
RANDOM = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 384,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
          "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


def run_writer(*args):
    return subprocess.run([sys.executable, str(WRITER), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(proc, prog, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def header_of(path):
    data = Path(path).read_bytes()
    (hlen,) = struct.unpack("<Q", data[16:24])
    return json.loads(data[24:24 + hlen]), -(-(24 + hlen) // 64) * 64, len(data)


def reference_int8(w, group_size, scale_dtype):
    """The quantization rule of docs/model-format.md, spelled differently from export.py: the scale
    and the quotient divided in float64 and rounded once to float32 (which is the correctly rounded
    float32 division), then rounded half to even and clipped."""
    rows, cols = w.shape
    g = np.asarray(w, np.float32).reshape(rows, cols // group_size, group_size)
    scale = (np.abs(g).max(axis=2).astype(np.float64) / 127.0).astype(np.float32)
    if scale_dtype == "fp16":
        scale = scale.astype(np.float16).astype(np.float32)
    divisor = np.where(scale == 0, 1.0, scale.astype(np.float64))[..., None]
    q = np.clip(np.rint((g.astype(np.float64) / divisor).astype(np.float32)), -127, 127)
    return q.astype(np.int8).reshape(rows, cols), scale


def assert_same_tensors(theirs: dict, ours_int8: dict, ours_float: dict) -> None:
    """theirs (legacy_int8.read_model): (codes, scales) pairs equal to ours_int8's NAME and
    NAME.scales byte for byte, float arrays equal to ours_float's."""
    for name, value in theirs.items():
        if isinstance(value, tuple):
            codes, scales = value
            assert np.array_equal(codes, ours_int8[name]), name
            assert np.asarray(ours_int8[name + ".scales"]).tobytes() == scales.tobytes(), name
        else:
            assert np.array_equal(value, ours_float[name]), name


# ---------------------------------------------------------------------------------------------
# export.py --dtype int8

@pytest.mark.parametrize("scale_dtype", ["fp32", "fp16"])
def test_int8_export_of_llama2_kjv(models, exported, scale_dtype):
    path = exported("--hf", models / "llama2-kjv", "--dtype", "int8", "--group-size", 32,
                    "--scale-dtype", scale_dtype)
    f32_cfg, f32 = kf.read_kuiper(str(exported("--hf", models / "llama2-kjv")))
    cfg, raw = kf.read_kuiper(str(path), decode_tensors=False)
    assert (cfg["dtype"], cfg["group_size"]) == ("int8", 32)
    assert {k: v for k, v in cfg.items() if k not in ("dtype", "group_size")} == \
        {k: v for k, v in f32_cfg.items() if k != "dtype"}

    # The layout: NAME then NAME.scales for each matrix, 64-byte aligned, then the embedded tokenizer.
    header, start, size = header_of(path)
    want = []
    for name, arr in f32.items():
        if arr.ndim == 2:
            want += [(name, "int8", list(arr.shape)), (name + ".scales", scale_dtype, [arr.shape[0], arr.shape[1] // 32])]
        else:
            want.append((name, "fp32", list(arr.shape)))
    assert [(t["name"], t["dtype"], t["shape"]) for t in header["tensors"]] == want
    assert all(t["offset"] % 64 == 0 for t in header["tensors"])
    last, tok = header["tensors"][-1], header["tokenizer"]
    assert tok["offset"] == -(-(last["offset"] + int(np.prod(last["shape"])) * kf.ITEMSIZE[last["dtype"]]) // 64) * 64
    assert size == start + tok["offset"] + tok["bytes"]

    _, deq = kf.read_kuiper(str(path))
    assert deq.keys() == f32.keys()
    for name, w in f32.items():
        if w.ndim == 1:
            assert np.array_equal(raw[name], w), name
            continue
        codes, scales = np.asarray(raw[name]), np.asarray(raw[name + ".scales"]).astype(np.float32)
        want_codes, want_scales = reference_int8(w, 32, scale_dtype)
        assert np.array_equal(scales, want_scales), name
        assert np.array_equal(codes, want_codes), name
        assert codes.min() >= -127
        # Dequantized, every value is within half a scale of the fp32 export's, give or take float32
        # rounding: w / scale may round to k + 0.5 (then to even) though the true quotient is below it.
        err = np.abs(deq[name] - w).reshape(scales.shape + (32,))
        assert np.all(err <= scales[..., None] * np.float32(0.5 + 2e-5)), name
        assert np.array_equal(deq[name], codes.astype(np.float32) * np.repeat(scales, 32, axis=1)), name


def test_int8_group_size_must_divide_every_row(models, tmp_path):
    out = tmp_path / "m.bin"
    for args in ([], ["--group-size", 64]):  # 64 is the default; llama2-kjv's rows are 288 long
        proc = run_export(out, "--hf", models / "llama2-kjv", "--dtype", "int8", *args)
        assert_one_line_error(proc, "export.py", "tensor tok_embeddings [32000, 288]", "group size 64",
                              "--group-size 32 would")
        assert list(tmp_path.iterdir()) == []


def test_int8_option_refusals(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(RANDOM))
    out = tmp_path / "m.bin"
    assert_one_line_error(run_export(out, "--random", cfg, "--dtype", "int8", "--legacy"), "export.py", "fp32 only")
    assert_one_line_error(run_export(out, "--random", cfg, "--group-size", 32), "export.py", "--dtype int8")
    assert_one_line_error(run_export(out, "--random", cfg, "--dtype", "fp16", "--scale-dtype", "fp32"),
                          "export.py", "--dtype int8")
    proc = run_export(out, "--random", cfg, "--dtype", "int8", "--group-size", 48)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr
    assert not out.exists()


def test_int8_export_summary_line(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(RANDOM))
    proc = run_export(tmp_path / "m.bin", "--random", cfg, "--dtype", "int8")
    assert proc.returncode == 0, proc.stderr
    assert "int8 (groups of 64, fp16 scales)" in proc.stderr and " s\n" in proc.stderr, proc.stderr


def test_quantize_int8_rules():
    # One group of 8: the scale of max 127 is exactly 1, so the codes are the values rounded half to even.
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 126.5, -127.0, 0.0]], np.float32)
    codes, scales = kf.quantize_int8(x, 8, "fp32")
    assert scales.tolist() == [[1.0]] and codes.tolist() == [[0, 2, 2, 0, -2, 126, -127, 0]]
    # All zeros: scale 0, codes 0 (not 0/0).
    codes, scales = kf.quantize_int8(np.zeros((2, 4), np.float32), 4, "fp16")
    assert scales.dtype == np.float16 and not scales.any() and not codes.any()
    # An fp16 scale rounded down (a subnormal: 1.25 * 2**-24 -> 2**-24) clips the largest values to 127;
    # one that underflows to 0 gives codes 0.
    tiny = np.float32(2.0 ** -24)
    x = np.array([[1.25 * 127 * tiny, -tiny, 0, 0], [0.25 * 127 * tiny, 0, 0, 0]], np.float32)
    codes, scales = kf.quantize_int8(x, 4, "fp16")
    assert scales.astype(np.float32).tolist() == [[tiny], [0.0]]
    assert codes.tolist() == [[127, -1, 0, 0], [0, 0, 0, 0]]
    # fp32 scales keep them.
    codes, _ = kf.quantize_int8(x, 4, "fp32")
    assert codes[:, 0].tolist() == [127, 127]
    with pytest.raises(kf.ExportError, match="non-finite"):
        kf.quantize_int8(np.array([[1.0, np.inf]], np.float32), 2)
    with pytest.raises(kf.ExportError, match="fp16 scales"):
        kf.quantize_int8(np.array([[1e7, 0.0]], np.float32), 2, "fp16")
    # llama2.c's quantize_q80 agrees with ours (fp32 scales) on rows of whole groups.
    x = np.random.default_rng(1).standard_normal((16, 96), dtype=np.float32)
    x[3, 32:64] = 0
    ours, our_scales = kf.quantize_int8(x, 32, "fp32")
    theirs, their_scales = legacy_int8.quantize_q80(x, 32)
    assert np.array_equal(ours.reshape(-1), theirs) and np.array_equal(our_scales.reshape(-1), their_scales)


# ---------------------------------------------------------------------------------------------
# llama2.c version 1 and 2

def test_llama2c_v2_equals_our_int8_export(models, exported, tmp_path):
    ours_cfg, ours = kf.read_kuiper(str(exported("--hf", models / "llama2-kjv", "--dtype", "int8",
                                                 "--group-size", 32, "--scale-dtype", "fp32")), decode_tensors=False)
    out = tmp_path / "v2.bin"
    proc = run_writer("llama2c-v2", out, "--hf", models / "llama2-kjv", "--group-size", 32)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:4] == b"24ka" and struct.unpack("<i7iB", data[4:37]) == (2, 288, 768, 6, 6, 2, 32000, 1024, 1)
    assert struct.unpack("<i", data[37:41]) == (32,) and not any(data[41:256])
    c = dict(ours_cfg, group_size=32)
    assert len(data) == legacy_int8.file_size("llama2c-v2", c, 32) == \
        256 + 4 * (13 * 288) + sum(n + n // 32 * 4 for n in (
            [32000 * 288] + 6 * [288 * 288, 96 * 288, 96 * 288, 288 * 288, 768 * 288, 288 * 768, 768 * 288]))
    # The first thing after the header is layer 0's attention norm; the first codes are tok_embeddings'.
    assert data[256:256 + 4 * 288] == np.asarray(ours["layers.0.attention_norm"], "<f4").tobytes()
    codes_at = 256 + 4 * 13 * 288
    assert data[codes_at:codes_at + 32000 * 288] == np.asarray(ours["tok_embeddings"]).tobytes()

    head, theirs = legacy_int8.read_model(str(out), "llama2c-v2")
    assert head["tied_embeddings"] and head["group_size"] == 32
    assert set(theirs) == {n for n in ours if not n.endswith(".scales")}
    assert_same_tensors(theirs, ours, ours)

    # Without --group-size: llama2.c's 64, halved to 32 to fit dim 288; the same file.
    again = tmp_path / "v2-default.bin"
    proc = run_writer("llama2c-v2", again, "--hf", models / "llama2-kjv")
    assert proc.returncode == 0 and "BACKOFF" in proc.stderr, proc.stderr
    assert again.read_bytes() == data


def test_llama2c_v1_equals_our_fp32_export(models, exported, tmp_path):
    _, ours = kf.read_kuiper(str(exported("--hf", models / "llama2-kjv")))
    out = tmp_path / "v1.bin"
    proc = run_writer("llama2c-v1", out, "--hf", models / "llama2-kjv")
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:4] == b"24ka" and struct.unpack("<i7iB", data[4:37]) == (1, 288, 768, 6, 6, 2, 32000, 1024, 1)
    assert not any(data[37:256])
    head, theirs = legacy_int8.read_model(str(out), "llama2c-v1")
    assert theirs.keys() == ours.keys()
    for name, arr in ours.items():
        assert np.array_equal(theirs[name], arr), name
    assert len(data) == 256 + 4 * sum(arr.size for arr in ours.values())


def test_writer_refusals(models, tmp_path):
    out = tmp_path / "m.bin"
    assert_one_line_error(run_writer("llama2c-v2", out, "--hf", models / "qwen2-kjv"), "legacy_int8.py",
                          "q/k/v biases")
    assert_one_line_error(run_writer("kuiperllama", out, "--hf", models / "llama2-kjv"), "legacy_int8.py",
                          "group size 64 does not divide dim 288")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# KuiperLLama

@pytest.mark.parametrize("tied", [False, True])
def test_kuiperllama_equals_our_int8_export(exported, tmp_path, tied):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(dict(RANDOM, tie_word_embeddings=tied)))
    ours_cfg, ours = kf.read_kuiper(str(exported("--random", cfg_path, "--seed", 7, "--dtype", "int8",
                                                 "--scale-dtype", "fp32")), decode_tensors=False)
    _, f32 = kf.read_kuiper(str(exported("--random", cfg_path, "--seed", 7)))
    assert ours_cfg["group_size"] == 64
    out = tmp_path / "kuiper.bin"
    proc = run_writer("kuiperllama", out, "--random", cfg_path, "--seed", 7)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert struct.unpack("<8i", data[:32]) == (128, 384, 2, 4, 2, 512 if tied else -512, 64, 64)
    # wq of layer 0 comes first: its codes, then its scales.
    assert data[32:32 + 128 * 128] == np.asarray(ours["layers.0.wq"]).tobytes()
    assert data[32 + 128 * 128:32 + 128 * 128 + 4 * 256] == np.asarray(ours["layers.0.wq.scales"]).tobytes()
    # The fp32 tail: embeddings, attention norms, ffn norms, final norm.
    tail = np.concatenate([f32["tok_embeddings"].reshape(-1)] + [f32[f"layers.{i}.attention_norm"] for i in (0, 1)]
                          + [f32[f"layers.{i}.ffn_norm"] for i in (0, 1)] + [f32["norm"]])
    assert data[-tail.size * 4:] == tail.astype("<f4").tobytes()
    quantized = [n for n in ours if ours[n].dtype == np.int8 and n != "tok_embeddings"]
    assert len(data) == 32 + sum(ours[n].size + 4 * ours[n + ".scales"].size for n in quantized) + 4 * tail.size

    head, theirs = legacy_int8.read_model(str(out), "kuiperllama")
    assert head["tied_embeddings"] == tied and ("output" in theirs) != tied
    assert_same_tensors(theirs, ours, f32)
