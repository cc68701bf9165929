"""Tests of tools/export.py against the shared checkpoints and golden logits (see test/tools/conftest.py)."""
import json
import shutil
import struct

import numpy as np
import pytest
from conftest import run_export

import checkpoints
import export
import kuiper_format as kf
from reference import forward
from writers import contiguous_state_dict, write_safetensors, write_torch_state_dict

TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


def read(path, decode=True):
    return kf.read_kuiper(str(path), decode_tensors=decode)


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export.py: error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# the file layout

def test_layout_is_aligned_and_complete(models, exported):
    path = exported("--hf", models / "qwen2-kjv")
    data = path.read_bytes()
    assert data[:8] == b"KUIPERLM" and struct.unpack("<II", data[8:16]) == (1, 0)
    (hlen,) = struct.unpack("<Q", data[16:24])
    header = json.loads(data[24:24 + hlen])
    start = -(-(24 + hlen) // 64) * 64
    assert not any(data[24 + hlen:start])
    ends = []
    for t in header["tensors"]:
        assert t["offset"] % 64 == 0
        ends.append(start + t["offset"] + int(np.prod(t["shape"])) * kf.ITEMSIZE[t["dtype"]])
        assert t["dtype"] == ("fp32" if len(t["shape"]) == 1 else header["config"]["dtype"])
    tok = header["tokenizer"]  # the embedded tokenizer.json, after the last tensor
    assert tok["offset"] % 64 == 0 and start + tok["offset"] >= max(ends)
    assert len(data) == start + tok["offset"] + tok["bytes"]
    names = [t["name"] for t in header["tensors"]]
    assert names[:10] == ["tok_embeddings", "layers.0.attention_norm", "layers.0.wq", "layers.0.wk",
                          "layers.0.wv", "layers.0.wo", "layers.0.bq", "layers.0.bk", "layers.0.bv",
                          "layers.0.ffn_norm"]
    assert names[-1] == "norm"  # tied: no output


def test_rotary_unpermute_follows_the_spec():
    perm = export.rotary_unpermute(2, 6)  # new row r takes HF row perm[r]
    assert perm.tolist() == [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.00390625, 1.01171875, 1.0 + 2**-8 + 2**-20, -2.5, np.inf, 3.4e38], np.float32)
    got = kf.bf16_to_f32(kf.f32_to_bf16(x))
    assert got.tolist() == [1.0, 1.0, 1.015625, 1.0078125, -2.5, np.inf, np.inf]
    assert np.isnan(kf.bf16_to_f32(kf.f32_to_bf16(np.array([np.nan], np.float32))))[0]


# ---------------------------------------------------------------------------------------------
# Hugging Face vs Meta

@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_hf_and_meta_exports_are_identical(models, exported, dtype):
    hf = exported("--hf", models / "llama2-kjv", "--dtype", dtype)
    meta = exported("--meta-llama", models / "llama2-kjv-meta", "--dtype", dtype,
                    "--tokenizer", models / "llama2" / "tokenizer.model", "--max-seq-len", 1024)
    hf_cfg, hf_w = read(hf, decode=False)
    meta_cfg, meta_w = read(meta, decode=False)
    assert hf_cfg == meta_cfg
    assert hf_w.keys() == meta_w.keys()
    for name in hf_w:
        assert np.array_equal(hf_w[name], meta_w[name]), name
    assert hf.read_bytes() == meta.read_bytes()


def test_meta_defaults_without_overrides(models, exported):
    cfg, _ = read(exported("--meta-llama", models / "llama2-kjv-meta"))
    assert cfg["max_seq_len"] == 4096 and cfg["tokenizer_vocab_size"] == 0 and cfg["tied_embeddings"]
    assert (cfg["bos_id"], cfg["eos_ids"], cfg["add_bos"]) == (1, [2], True)


def split_meta(weights: dict, n: int, emb_axis: int) -> list:
    """Meta-style model-parallel shards of a state dict (Meta names)."""
    shards = [{} for _ in range(n)]
    for name, arr in weights.items():
        part = name.split(".")[-2]
        axis = {"tok_embeddings": emb_axis, "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
                "wo": 1, "w2": 1}.get(part)
        pieces = [arr] * n if axis is None else np.split(arr, n, axis=axis)
        for shard, piece in zip(shards, pieces):
            shard[name] = np.ascontiguousarray(piece)
    return shards


def meta_state_dict(path) -> dict:
    return {name: t.array() for name, t in checkpoints.load_torch_checkpoint(str(path)).items()}


@pytest.mark.parametrize("emb_axis", [1, 0])  # Llama 2 splits the embedding by dim, Llama 3 by vocab
def test_meta_model_parallel_shards_are_joined(models, exported, tmp_path, emb_axis):
    src = models / "llama2-kjv-meta"
    weights = meta_state_dict(src / "consolidated.00.pth")
    for i, shard in enumerate(split_meta(weights, 2, emb_axis)):
        storages, entries = contiguous_state_dict(shard)
        if i == 1:  # a transposed view, as torch may save one: w2 of layer 0 from its transpose
            t = np.ascontiguousarray(shard["layers.0.feed_forward.w2.weight"].T)
            storages["t"] = np.concatenate([np.zeros(3, t.dtype), t.reshape(-1)])
            entries["layers.0.feed_forward.w2.weight"] = ("t", 3, list(t.shape[::-1]), [1, t.shape[1]])
        write_torch_state_dict(tmp_path / f"consolidated.{i:02d}.pth", storages, entries,
                               prefix=f"consolidated.{i:02d}")
    shutil.copy(src / "params.json", tmp_path / "params.json")
    joined = exported("--meta-llama", tmp_path)
    assert joined.read_bytes() == exported("--meta-llama", src).read_bytes()


def test_meta_llama3_matches_hf(models, exported, tmp_path):
    """A Meta-layout Llama 3 (use_scaled_rope, tied, tiktoken tokenizer.model), made from llama3-kjv;
    both exports name the tiktoken file, which is not embedded (the runtime does not read it)."""
    tiktoken = models / "llama3" / "original" / "tokenizer.model"
    hf = exported("--hf", models / "llama3-kjv", "--dtype", "bf16", "--tokenizer", tiktoken)
    cfg, w = read(hf, decode=False)
    meta = {export.meta_name(name): np.asarray(arr) for name, arr in w.items()}
    meta["output.weight"] = meta["tok_embeddings.weight"]
    meta = {k: (v if v.dtype == np.uint16 else kf.f32_to_bf16(v)) for k, v in meta.items()}
    write_torch_state_dict(tmp_path / "consolidated.00.pth", *contiguous_state_dict(meta))
    write_json(tmp_path / "params.json", {
        "dim": 128, "n_layers": 4, "n_heads": 2, "n_kv_heads": 1, "vocab_size": 128256, "multiple_of": 128,
        "ffn_dim_multiplier": 1.0, "norm_eps": 1e-5, "rope_theta": 500000.0, "use_scaled_rope": True})
    out = exported("--meta-llama", tmp_path, "--dtype", "bf16", "--max-seq-len", 4096,
                   "--tokenizer", tiktoken)
    assert out.read_bytes() == hf.read_bytes()


# ---------------------------------------------------------------------------------------------
# the golden logits of HF transformers

def check_top20(config, weights, cases):
    weights = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    for case in cases:
        logits = forward(config, weights, case["prompt_ids"])
        for pos, top in enumerate(case["prompt_top20"]):
            ids = [i for i, _ in top]
            assert set(np.argsort(-logits[pos])[:20].tolist()) == set(ids), (case["prompt_ids"], pos)
            assert int(np.argmax(logits[pos])) == ids[0]
            np.testing.assert_allclose(logits[pos][ids], [v for _, v in top], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("model,cases", [("llama2-kjv", ("llama2", "prompts")), ("qwen2-kjv", ("qwen2", "raw")),
                                         ("llama3-kjv", ("llama3", "raw"))])
def test_reference_forward_reproduces_golden_logits(models, exported, model, cases):
    golden = json.loads((models / "golden_public.json").read_text())
    config, weights = read(exported("--hf", models / model))
    check_top20(config, weights, golden[cases[0]][cases[1]])


def test_meta_export_reproduces_golden_logits(models, exported):
    golden = json.loads((models / "golden_public.json").read_text())
    config, weights = read(exported("--meta-llama", models / "llama2-kjv-meta"))
    check_top20(config, weights, golden["llama2"]["prompts"][:2])


def test_bf16_checkpoint_exports_losslessly(models, exported):
    _, w32 = read(exported("--hf", models / "qwen2-kjv"))
    cfg, w16 = read(exported("--hf", models / "qwen2-kjv", "--dtype", "bf16"))
    assert cfg["dtype"] == "bf16"
    for name in w32:
        assert np.array_equal(w32[name], w16[name]), name


# ---------------------------------------------------------------------------------------------
# metadata

def test_metadata_of_the_shared_models(models, exported):
    l2, _ = read(exported("--hf", models / "llama2-kjv"))
    assert l2 == {"architecture": "llama", "dim": 288, "hidden_dim": 768, "n_layers": 6, "n_heads": 6,
                  "n_kv_heads": 2, "head_dim": 48, "vocab_size": 32000, "max_seq_len": 1024,
                  "rope_theta": 10000.0, "rope_scaling": None, "norm_eps": 1e-5, "tied_embeddings": True,
                  "attention_bias": False, "dtype": "fp32", "bos_id": 1, "eos_ids": [2], "add_bos": True,
                  "chat_template": "", "tokenizer_vocab_size": 32000, "_version": 1}
    q, _ = read(exported("--hf", models / "qwen2-kjv"))
    assert (q["architecture"], q["attention_bias"], q["bos_id"], q["eos_ids"], q["add_bos"]) == \
        ("qwen2", True, -1, [151645, 151643], False)
    assert (q["chat_template"], q["tokenizer_vocab_size"], q["rope_theta"], q["norm_eps"]) == \
        ("chatml", 151665, 1e6, 1e-6)
    l3, _ = read(exported("--hf", models / "llama3-kjv"))
    assert l3["rope_scaling"] == {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position": 8192}
    assert (l3["bos_id"], l3["eos_ids"], l3["add_bos"], l3["chat_template"], l3["tokenizer_vocab_size"]) == \
        (128000, [128001, 128008, 128009], True, "llama3", 128256)


def embedded_tokenizer(path):
    data = path.read_bytes()
    (hlen,) = struct.unpack("<Q", data[16:24])
    header = json.loads(data[24:24 + hlen])
    if "tokenizer" not in header:
        return None, None
    t, start = header["tokenizer"], -(-(24 + hlen) // 64) * 64
    return t["kind"], data[start + t["offset"]:start + t["offset"] + t["bytes"]]


@pytest.mark.parametrize("model,file,kind", [("llama2-kjv", "tokenizer.model", "sentencepiece"),
                                             ("qwen2-kjv", "tokenizer.json", "tokenizer.json"),
                                             ("llama3-kjv", "tokenizer.json", "tokenizer.json")])
def test_tokenizer_is_embedded(models, exported, model, file, kind):
    assert embedded_tokenizer(exported("--hf", models / model)) == (kind, (models / model / file).read_bytes())


def test_tokenizer_embedding_choices(models, exported, tmp_path):
    """An explicit --tokenizer is embedded; a sentencepiece model wins over a sentencepiece-style
    tokenizer.json beside it; a folder without a tokenizer embeds none."""
    spm = models / "llama2" / "tokenizer.model"
    explicit = exported("--hf", models / "qwen2-kjv", "--tokenizer", spm)
    assert embedded_tokenizer(explicit) == ("sentencepiece", spm.read_bytes())
    d = tmp_path / "both"
    shutil.copytree(models / "llama2-kjv", d)
    (d / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "byte_fallback": True, "vocab": {}}}))
    out = tmp_path / "both.bin"
    assert run_export(out, "-q", "--hf", d).returncode == 0
    assert embedded_tokenizer(out) == ("sentencepiece", spm.read_bytes())
    (d / "tokenizer.model").unlink()
    (d / "tokenizer.json").unlink()
    assert run_export(out, "-q", "--hf", d).returncode == 0
    assert embedded_tokenizer(out) == (None, None)


def test_real_release_configs(models, tmp_path):
    """config.json files as published (or re-saved) on the Hub, with their tokenizer files beside."""
    class Args:
        tokenizer = chat_template = max_seq_len = None
        dtype = "bf16"

    def meta_of(config_dir, extra=()):
        d = tmp_path / config_dir.replace("/", "_")
        d.mkdir()
        for f in ("config.json",) + tuple(extra):
            shutil.copy(models / config_dir / f, d / f)
        cfg = json.loads((d / "config.json").read_text())
        return export.hf_metadata(export.hf_config(cfg, "config.json"), cfg, str(d), Args)

    l3 = meta_of("llama3")
    assert (l3["dim"], l3["n_layers"], l3["n_heads"], l3["n_kv_heads"], l3["head_dim"]) == (2048, 16, 32, 8, 64)
    assert l3["rope_scaling"]["factor"] == 32.0 and l3["eos_ids"] == [128001, 128008, 128009]
    q = meta_of("qwen2.5/resaved-transformers-4.49.0", ["generation_config.json"])
    assert (q["architecture"], q["dim"], q["eos_ids"], q["bos_id"], q["chat_template"]) == \
        ("qwen2", 896, [151645, 151643], -1, "chatml")
    tl = meta_of("tinyllama-chat/resaved-transformers-4.56.0",
                 ["tokenizer_config.json", "chat_template.jinja", "tokenizer.json"])
    assert (tl["hidden_dim"], tl["n_kv_heads"], tl["tied_embeddings"], tl["chat_template"], tl["add_bos"],
            tl["tokenizer_vocab_size"]) == (5632, 4, False, "zephyr", True, 32000)
    assert checkpoints.chat_template_name("{% ... %}[INST] {{ m }} [/INST]") == "llama2"
    assert checkpoints.chat_template_name([{"name": "default", "template": "<|im_start|>"}]) == "chatml"


def test_chat_template_override(models, exported):
    cfg, _ = read(exported("--hf", models / "llama2-kjv", "--chat-template", "llama2", "--max-seq-len", 256))
    assert (cfg["chat_template"], cfg["max_seq_len"]) == ("llama2", 256)


# ---------------------------------------------------------------------------------------------
# llama2.c legacy v0

def test_legacy_layout_matches_own_format(models, exported):
    config, own = read(exported("--hf", models / "llama2-kjv"))
    path = exported("--hf", models / "llama2-kjv", "--legacy")
    head, legacy = kf.read_legacy(str(path))
    assert head == {"dim": 288, "hidden_dim": 768, "n_layers": 6, "n_heads": 6, "n_kv_heads": 2,
                    "vocab_size": 32000, "max_seq_len": 1024, "tied_embeddings": True}
    assert struct.unpack("<7i", path.read_bytes()[:28])[5] == 32000  # positive: shared classifier
    for name, arr in own.items():
        assert np.array_equal(legacy[name], arr), name
    hd = config["head_dim"]
    angles = np.arange(1024)[:, None] / 10000.0 ** (np.arange(0, hd, 2) / hd)
    np.testing.assert_allclose(legacy["freq_cis_real"], np.cos(angles), atol=2e-4)
    np.testing.assert_allclose(legacy["freq_cis_imag"], np.sin(angles), atol=2e-4)


def test_legacy_untied_has_negative_vocab_and_classifier_last(exported, tmp_path):
    cfg = write_json(tmp_path / "config.json", TINY)
    own_cfg, own = read(exported("--random", cfg, "--seed", 5))
    path = exported("--random", cfg, "--seed", 5, "--legacy")
    assert struct.unpack("<7i", path.read_bytes()[:28]) == (64, 96, 2, 4, 2, -300, 32)
    head, legacy = kf.read_legacy(str(path))
    assert not head["tied_embeddings"]
    for name, arr in own.items():
        assert np.array_equal(legacy[name], arr), name
    assert path.read_bytes()[-300 * 64 * 4:] == np.asarray(own["output"], "<f4").tobytes()


@pytest.mark.parametrize("args,message", [
    (["--legacy", "--dtype", "fp16"], "fp32 only"),
    (["--legacy"], "q/k/v biases"),
])
def test_legacy_refusals(models, tmp_path, args, message):
    out = tmp_path / "m.bin"
    proc = run_export(out, "--hf", models / "qwen2-kjv", *args)
    assert_one_line_error(proc, message)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# --random

def test_random_model(exported, tmp_path):
    cfg_path = write_json(tmp_path / "config.json", TINY)
    path = exported("--random", cfg_path, "--dtype", "fp16", "--seed", 3)
    cfg, w = read(path)
    assert (cfg["dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["vocab_size"], cfg["dtype"]) == (64, 96, 2, 300, "fp16")
    assert w.keys() == export.expected_shapes(cfg).keys()
    for name, shape in export.expected_shapes(cfg).items():
        assert w[name].shape == shape
    assert np.all(w["norm"] == 1) and np.all(w["layers.1.ffn_norm"] == 1)
    assert 0.015 < float(np.std(w["layers.0.w1"])) < 0.025
    assert not np.array_equal(w["layers.0.w1"], w["layers.1.w1"])
    again = exported("--random", cfg_path, "--dtype", "fp16", "--seed", 3, "--quiet")
    assert again.read_bytes() == path.read_bytes()


def test_explicit_head_dim(exported, tmp_path):
    cfg_path = write_json(tmp_path / "config.json", dict(TINY, head_dim=32))
    cfg, w = read(exported("--random", cfg_path))
    assert cfg["head_dim"] == 32 and w["layers.0.wq"].shape == (128, 64) and w["layers.0.wk"].shape == (64, 64)
    assert w["layers.0.wo"].shape == (64, 128)
    proc = run_export(tmp_path / "legacy.bin", "--random", cfg_path, "--legacy")
    assert_one_line_error(proc, "head_dim 32 != dim / n_heads")


def test_random_qwen2_has_biases(exported, tmp_path):
    cfg = dict(TINY, architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True)
    conf, w = read(exported("--random", write_json(tmp_path / "config.json", cfg)))
    assert conf["attention_bias"] and w["layers.1.bk"].shape == (32,) and "output" not in w
    assert conf["chat_template"] == "chatml" and conf["bos_id"] == -1


# ---------------------------------------------------------------------------------------------
# sharded safetensors, and errors

def hf_tensors(models):
    st = checkpoints.SafetensorsFile(str(models / "llama2-kjv" / "model.safetensors"))
    return {name: np.asarray(st.source(name).array()) for name in st.tensors}


def test_sharded_safetensors_with_index(models, exported, tmp_path):
    tensors = hf_tensors(models)
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for fn, part in halves.items():
        write_safetensors(tmp_path / fn, {n: tensors[n] for n in part})
    write_json(tmp_path / "model.safetensors.index.json",
               {"metadata": {}, "weight_map": {n: fn for fn, part in halves.items() for n in part}})
    for f in ("config.json", "generation_config.json", "tokenizer.model"):
        shutil.copy(models / "llama2-kjv" / f, tmp_path / f)
    assert exported("--hf", tmp_path).read_bytes() == exported("--hf", models / "llama2-kjv").read_bytes()


def broken_hf_dir(models, tmp_path, config=None, drop=None, reshape=None, scale=None):
    tensors = hf_tensors(models)
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = tensors[reshape][:-1]
    if scale:
        tensors[scale] = (tensors[scale].astype(np.float32) * 1e6)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    cfg = json.loads((models / "llama2-kjv" / "config.json").read_text())
    write_json(tmp_path / "config.json", dict(cfg, **(config or {})))
    return tmp_path


@pytest.mark.parametrize("case,message", [
    ("missing_dir", "no such Hugging Face model directory"),
    ("no_config", "no config.json"),
    ("unsupported_arch", "unsupported architecture 'GPT2LMHeadModel'"),
    ("no_weights", "no *.safetensors"),
    ("missing_tensor", "missing tensor model.layers.3.mlp.up_proj.weight"),
    ("shape_mismatch", "shape mismatch: model.layers.1.self_attn.k_proj.weight is [95, 288]"),
    ("rope_type", "unsupported rope_scaling type 'yarn'"),
    ("meta_no_params", "no params.json"),
])
def test_errors_are_one_line(models, tmp_path, case, message):
    out, src = tmp_path / "out.bin", tmp_path / "src"
    src.mkdir()
    args = ["--hf", src]
    if case == "missing_dir":
        args = ["--hf", tmp_path / "nope"]
    elif case == "unsupported_arch":
        write_json(src / "config.json", dict(TINY, architectures=["GPT2LMHeadModel"]))
    elif case == "no_weights":
        write_json(src / "config.json", TINY)
    elif case == "missing_tensor":
        broken_hf_dir(models, src, drop="model.layers.3.mlp.up_proj.weight")
    elif case == "shape_mismatch":
        broken_hf_dir(models, src, reshape="model.layers.1.self_attn.k_proj.weight")
    elif case == "rope_type":
        broken_hf_dir(models, src, config={"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    elif case == "meta_no_params":
        args = ["--meta-llama", src]
    proc = run_export(out, *args)
    assert_one_line_error(proc, message)
    assert not out.exists() and list(tmp_path.glob("out.bin*")) == []


def test_failed_export_leaves_old_file_untouched(models, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    broken_hf_dir(models, src, scale="model.layers.5.mlp.down_proj.weight")  # beyond fp16 after scaling
    out = tmp_path / "out.bin"
    out.write_bytes(b"previous model")
    proc = run_export(out, "--hf", src, "--dtype", "fp16")
    assert_one_line_error(proc, "layers.5.w2 has values beyond the fp16 range")
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "src"]
