#!/usr/bin/env python3
"""Writes the seed corpora of test/fuzz/corpus/<target>/: tiny model files (tools/export.py
--random and test/tools/legacy_int8.py on configs of a few hundred weights), small sentencepiece
models (protobuf written by hand: ModelProto of sentencepiece_model.proto), tokenizer.json files,
texts, conversations and command lines. Run from anywhere; it replaces the corpus folders."""
import json
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "test" / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def hf_config(arch, dim, hidden, heads, kv, vocab, seq, theta, tied, **extra):
    c = {"architectures": [arch], "model_type": "qwen2" if arch.startswith("Qwen") else "llama",
         "hidden_size": dim, "intermediate_size": hidden, "num_hidden_layers": 1,
         "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
         "max_position_embeddings": seq, "rope_theta": theta, "rms_norm_eps": 1e-5,
         "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2}
    c.update(extra)
    return c


def models(tmp):
    small = hf_config("LlamaForCausalLM", 8, 16, 2, 1, 16, 8, 1e4, True)
    qwen = hf_config("Qwen2ForCausalLM", 8, 16, 2, 1, 16, 8, 1e6, False)
    llama3 = hf_config("LlamaForCausalLM", 32, 32, 2, 1, 8, 16, 5e5, True, eos_token_id=[2, 3],
                       rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8})
    legacy = hf_config("LlamaForCausalLM", 32, 32, 2, 1, 8, 8, 1e4, False)
    paths = {}
    for name, cfg in [("small", small), ("qwen", qwen), ("llama3", llama3), ("legacy", legacy)]:
        paths[name] = tmp / f"{name}.json"
        paths[name].write_text(json.dumps(cfg))
    export = [sys.executable, str(ROOT / "tools" / "export.py"), "-q", "--random"]
    legacy_int8 = [sys.executable, str(ROOT / "test" / "tools" / "legacy_int8.py"), "--random"]
    out = CORPUS / "fuzz_model_file"
    out_legacy = CORPUS / "fuzz_legacy_model"
    out.mkdir(parents=True)
    out_legacy.mkdir(parents=True)
    runs = [
        export + [str(paths["small"]), str(out / "llama_fp32.bin")],
        export + [str(paths["qwen"]), "--dtype", "fp16", str(out / "qwen2_fp16_untied.bin")],
        export + [str(paths["llama3"]), "--dtype", "int8", "--group-size", "32",
                  str(out / "llama3_int8_scaled.bin")],
        export + [str(paths["llama3"]), "--dtype", "q4", str(out / "llama3_q4.bin")],
        export + [str(paths["small"]), "--legacy", str(out_legacy / "llama2c_v0.bin")],
        legacy_int8 + [str(paths["legacy"]), "llama2c-v1", str(out_legacy / "llama2c_v1.bin")],
        legacy_int8 + [str(paths["legacy"]), "--group-size", "32", "llama2c-v2",
                       str(out_legacy / "llama2c_v2.bin")],
        legacy_int8 + [str(paths["legacy"]), "--group-size", "32", "kuiperllama",
                       str(out_legacy / "kuiperllama.bin")],
    ]
    for cmd in runs:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Protobuf wire format, just enough for sentencepiece's ModelProto.
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    b = b.encode() if isinstance(b, str) else b
    return varint(num << 3 | 2) + varint(len(b)) + b


def field_float(num, f):
    return varint(num << 3 | 5) + struct.pack("<f", f)


NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6
UNIGRAM, BPE = 1, 2


def sentencepiece_model(model_type, pieces, byte_fallback):
    body = b""
    for piece, score, kind in pieces:
        body += field_bytes(1, field_bytes(1, piece) + field_float(2, score) + field_varint(3, kind))
    trainer = field_varint(3, model_type) + field_varint(4, len(pieces))
    if byte_fallback:
        trainer += field_varint(35, 1)
    body += field_bytes(2, trainer)
    body += field_bytes(3, field_bytes(1, "identity") + field_varint(3, 1) + field_varint(4, 1) +
                        field_varint(5, 1))
    return body


def sentencepiece_models():
    specials = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    words = ["\u2581", "\u2581the", "\u2581a", "e", "t", "h", "a", "th", "he", "\u2581t", "in", "n"]
    normal = [(w, -float(i), NORMAL) for i, w in enumerate(words)]
    byte_pieces = [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    write("fuzz_sentencepiece_model", "unigram.model",
          sentencepiece_model(UNIGRAM, specials + normal, False) + b"\xff\xe2\x96\x81the heat")
    write("fuzz_sentencepiece_model", "bpe_byte_fallback.model",
          sentencepiece_model(BPE, specials + byte_pieces + normal, True) + b"\xff<s>the\n\xe4\xb8\xad</s>")


def tokenizers():
    for name in ["tiny_bytelevel", "tiny_removed", "tiny_merged_next"]:
        src = (ROOT / "test" / "data" / "tokenizer" / f"{name}.json").read_bytes()
        write("fuzz_tokenizer_json", f"{name}.json", src + b"\0Hello  world's 123 <|endoftext|>\n")
    # A minimal document of each kind, so that mutations reach the steps quickly.
    minimal = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]},
               "added_tokens": [{"id": 3, "content": "<s>", "special": True}],
               "normalizer": {"type": "NFC"},
               "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                   {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated"},
                   {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
               "post_processor": {"type": "TemplateProcessing",
                                  "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
                                  "special_tokens": {"<s>": {"id": "<s>", "ids": [3]}}},
               "decoder": {"type": "ByteLevel"}}
    write("fuzz_tokenizer_json", "minimal.json", json.dumps(minimal) + "\0ab ba<s>")


def texts():
    samples = ["Hello world", "  leading spaces and\ttabs\n\n", "<|im_start|>user\nhi<|im_end|>",
               "<s>[INST] Hi [/INST]", "\u4e2d\u6587 \U0001F600 caf\u00e9", "123456789 it's",
               "\xc3\x28 invalid"]
    for i, s in enumerate(samples):
        data = s.encode("latin-1") if s.startswith("\xc3") else s.encode()
        write("fuzz_encode", f"text{i}", bytes([i]) + data)


def conversations():
    def conv(template, prompt, messages):
        out = bytes([template, prompt])
        for role, content in messages:
            out += bytes([{"system": 0, "user": 1, "assistant": 2}[role]]) + content.encode() + b"\0"
        return out
    turns = [("system", "Be terse."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")]
    for t in range(4):
        write("fuzz_chat_template", f"template{t}", conv(t, 1, turns))
        write("fuzz_chat_template", f"template{t}_nosys", conv(t, 0, turns[1:]))
    write("fuzz_chat_template", "odd_role", bytes([0, 1, 255]) + b"tool\0result\0")


def command_lines():
    lines = [["m.bin", "t.model", "-p", "Hello", "-n", "16", "--temp", "0"],
             ["m.bin", "t.json", "--chat", "--system=Be terse", "--template", "chatml", "-c", "64"],
             ["m.bin", "t.model", "--top-p", "0.9", "--top-k=40", "--seed", "18446744073709551615"],
             ["--help"], ["m.bin", "t.model", "--device", "cuda", "-t", "2", "--no-mmap", "--ids"]]
    for i, words in enumerate(lines):
        write("fuzz_options", f"args{i}", b"\0".join(w.encode() for w in words))


def main():
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        models(pathlib.Path(tmp))
    sentencepiece_models()
    tokenizers()
    texts()
    conversations()
    command_lines()


if __name__ == "__main__":
    main()
