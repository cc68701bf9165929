"""A small numpy forward pass over kuiper's model format (float64): the independent check that what
export.py wrote (interleaved rotary rows, GQA, biases, tying, rope scaling, metadata) is right."""
import math

import numpy as np


def inv_freq(config: dict) -> np.ndarray:
    hd = config["head_dim"]
    inv = 1.0 / (config["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    sc = config["rope_scaling"]
    if sc is None:
        return inv
    assert sc["type"] == "llama3", sc
    factor, low, high, old = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"], sc["original_max_position"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return np.where(medium, smoothed, scaled)


def rope(v: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Interleaved rotary: dims (2j, 2j+1) of each head form pair j. v: [T, heads, head_dim]."""
    a, b = v[..., 0::2], v[..., 1::2]
    out = np.empty_like(v)
    out[..., 0::2] = a * cos[:, None, :] - b * sin[:, None, :]
    out[..., 1::2] = a * sin[:, None, :] + b * cos[:, None, :]
    return out


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(config: dict, w: dict, ids) -> np.ndarray:
    """Logits [len(ids), vocab] for a prompt, every position (causal attention)."""
    c = config
    nh, nkv, hd, eps = c["n_heads"], c["n_kv_heads"], c["head_dim"], c["norm_eps"]
    T = len(ids)
    g = lambda name: np.asarray(w[name], dtype=np.float64)  # noqa: E731
    x = np.asarray(w["tok_embeddings"][np.asarray(ids)], dtype=np.float64)
    angles = np.arange(T)[:, None] * inv_freq(c)[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(c["n_layers"]):
        p = f"layers.{layer}."
        h = rmsnorm(x, g(p + "attention_norm"), eps)
        q, k, v = h @ g(p + "wq").T, h @ g(p + "wk").T, h @ g(p + "wv").T
        if c["attention_bias"]:
            q, k, v = q + g(p + "bq"), k + g(p + "bk"), v + g(p + "bv")
        q = rope(q.reshape(T, nh, hd), cos, sin)
        k = np.repeat(rope(k.reshape(T, nkv, hd), cos, sin), nh // nkv, axis=1)
        v = np.repeat(v.reshape(T, nkv, hd), nh // nkv, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", scores, v).reshape(T, nh * hd) @ g(p + "wo").T
        h = rmsnorm(x, g(p + "ffn_norm"), eps)
        gate = h @ g(p + "w1").T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ g(p + "w3").T)) @ g(p + "w2").T
    x = rmsnorm(x, g("norm"), eps)
    classifier = w["tok_embeddings"] if c["tied_embeddings"] else w["output"]
    return x @ np.asarray(classifier, dtype=np.float64).T
