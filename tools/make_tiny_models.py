#!/usr/bin/env python3
"""Make tiny random checkpoints for every architecture shardserve supports.

For one family this writes, into --out DIR:

  config.json, model.safetensors (F32, Hugging Face tensor names),
  tokenizer.json, tokenizer_config.json      a Hugging Face model directory
  model.gguf                                   the same weights for llama.cpp
                                               (F32, llama.cpp tensor names)

and with --extra-copies also DIR/bf16/ (the same model stored as BF16) and
DIR/sharded/ (F32 split in two files with model.safetensors.index.json).

Every weight is rounded to a value BF16 can hold, so the F32 and BF16 copies
describe exactly the same model and share one set of reference logits.

The weights come from a fixed seed: running the script twice gives the same
bytes. `hf_forward` below is an independent numpy forward pass with Hugging
Face semantics (rotate_half RoPE on unpermuted weights, softmax router + top-k,
optional top-k renormalisation, Qwen2-MoE sigmoid-gated shared expert, OLMoE
full q/k norm, Qwen3 per-head q/k norm); tests/fixtures/make_tiny_fixtures.py
uses it to cross-check llama.cpp.

Usage:
  python3 tools/make_tiny_models.py --family mixtral --out DIR [--extra-copies]
  python3 tools/make_tiny_models.py --list
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------

_COMMON = dict(
    hidden=64,
    layers=2,
    heads=4,
    kv_heads=2,
    head_dim=16,
    max_pos=256,
    eps=1e-6,
    rope_theta=10000.0,
    tie=False,
    qkv_bias=False,
    qk_norm=None,  # None | "head" (Qwen3) | "full" (OLMoE)
    experts=0,
    topk=0,
    norm_topk=False,
    intermediate=128,  # dense MLP width (Mixtral: width of each expert)
    moe_intermediate=0,
    shared_intermediate=0,
)

# Seeds were picked (with the numpy forward pass below, on the fixture prompt of
# tests/fixtures/make_tiny_fixtures.py) so that every greedy step has a top-2
# logit margin >= 0.03 and no router comes within 2e-3 of a top-k tie: float
# rounding differences between implementations cannot flip a token or an expert.
FAMILIES = {
    "mixtral": dict(
        _COMMON, seed=1, hf_arch="MixtralForCausalLM", model_type="mixtral",
        gguf_arch="llama", vocab=384, experts=4, topk=2, norm_topk=True,
        intermediate=48, eps=1e-5, rope_theta=1000000.0),
    "qwen2moe": dict(
        _COMMON, seed=13, hf_arch="Qwen2MoeForCausalLM", model_type="qwen2_moe",
        gguf_arch="qwen2moe", vocab=384, experts=8, topk=2, norm_topk=False,
        qkv_bias=True, intermediate=128, moe_intermediate=16,
        shared_intermediate=48, rope_theta=1000000.0),
    "qwen3moe": dict(
        _COMMON, seed=5, hf_arch="Qwen3MoeForCausalLM", model_type="qwen3_moe",
        gguf_arch="qwen3moe", vocab=384, head_dim=32, qk_norm="head",
        experts=8, topk=2, norm_topk=True, intermediate=128,
        moe_intermediate=16, rope_theta=1000000.0),
    "olmoe": dict(
        _COMMON, seed=5, hf_arch="OlmoeForCausalLM", model_type="olmoe",
        gguf_arch="olmoe", vocab=384, kv_heads=4, qk_norm="full", experts=8,
        topk=2, norm_topk=False, intermediate=24, moe_intermediate=24,
        eps=1e-5),
    "qwen2": dict(
        _COMMON, seed=3, hf_arch="Qwen2ForCausalLM", model_type="qwen2",
        gguf_arch="qwen2", vocab=320, qkv_bias=True, rope_theta=1000000.0),
    "qwen3": dict(
        _COMMON, seed=12, hf_arch="Qwen3ForCausalLM", model_type="qwen3",
        gguf_arch="qwen3", vocab=320, head_dim=32, qk_norm="head", tie=True,
        rope_theta=1000000.0),
    "llama": dict(
        _COMMON, seed=1, hf_arch="LlamaForCausalLM", model_type="llama",
        gguf_arch="llama", vocab=300, tie=True, eps=1e-5, rope_theta=10000.0),
    # llama.cpp runs Mistral as GGUF arch "llama". The sliding window (128) is shorter than
    # max_pos, so shardserve caps the context at it; the fixture's 80 tokens fit inside it, where
    # sliding-window attention is plain causal attention.
    "mistral": dict(
        _COMMON, seed=1, hf_arch="MistralForCausalLM", model_type="mistral",
        gguf_arch="llama", vocab=320, eps=1e-5, rope_theta=1000000.0, sliding_window=128),
}


def family_spec(name):
    spec = dict(FAMILIES[name])
    spec["family"] = name
    return spec


def is_moe(spec):
    return spec["experts"] > 0


def expert_width(spec):
    # Mixtral sizes its experts with intermediate_size; the others with
    # moe_intermediate_size (OLMoE has only intermediate_size, set equal).
    return spec["intermediate"] if spec["family"] == "mixtral" else spec["moe_intermediate"]


# ---------------------------------------------------------------------------
# Tokenizer: byte-level BPE (GPT-2 style), trained on a fixed small corpus
# ---------------------------------------------------------------------------

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

_CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox
ran back into the forest where the other foxes were waiting for their dinner.
A language model reads a sequence of tokens and predicts the next one. It does
this again and again, one token at a time, until it reaches the end of the text
or a stop condition. The model is made of layers; each layer has attention and a
feed forward network. In a mixture of experts, the feed forward network is
replaced by several experts and a router that sends each token to the best two.
Hello world! How are you today? I am fine, thank you. What time is it there?
def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, i * 2))
One, two, three, four, five, six, seven, eight, nine, ten. 1 + 2 = 3 and 12 * 12 = 144.
The weather in the north is cold in the winter and warm in the summer. People
there like to read, to walk in the hills, and to talk with their friends.
Servers that answer many requests at the same time put them in one batch, and
they keep the keys and values of the attention in a cache so that the next token
is cheap to compute. The cache is split into blocks of sixteen tokens each.
"""

_PRETOKENIZE = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) +
          list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def make_tokenizer(vocab_size):
    """Returns (tokens, merges, token_types) with len(tokens) == vocab_size.

    ids 0..255 are the 256 single bytes (in byte order), then the merged
    tokens in the order they were learned, then SPECIAL_TOKENS.
    """
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    vocab = set(tokens)
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    assert n_merges > 0
    words = {}
    for piece in _PRETOKENIZE.findall(_CORPUS):
        w = tuple(b2u[b] for b in piece.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = []
    banned = set()
    while len(merges) < n_merges:
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                if (a, b) not in banned:
                    counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            raise RuntimeError("tokenizer corpus too small for %d merges" % n_merges)
        # most frequent pair, ties broken by the pair itself (deterministic)
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merged = best[0] + best[1]
        if merged in vocab:
            banned.add(best)
            continue
        merges.append(best)
        tokens.append(merged)
        vocab.add(merged)
        new_words = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    tokens += SPECIAL_TOKENS
    types = [1] * (vocab_size - len(SPECIAL_TOKENS)) + [3] * len(SPECIAL_TOKENS)  # NORMAL, CONTROL
    return tokens, ["%s %s" % m for m in merges], types


def special_ids(spec):
    v = spec["vocab"]
    return {"endoftext": v - 3, "im_start": v - 2, "im_end": v - 1}


def hf_tokenizer_json(tokens, merges, types):
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 3:
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": merges},
    }


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

def round_to_bf16(a):
    """Round float32 values to the nearest bfloat16 (ties to even), as float32."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def make_weights(spec):
    """Hugging Face tensor name -> float32 array (values BF16-exact), in a fixed order."""
    rng = np.random.default_rng(spec["seed"])
    H, V = spec["hidden"], spec["vocab"]
    nh, nkv, hd = spec["heads"], spec["kv_heads"], spec["head_dim"]
    w = {}

    def normal(shape, std):
        return round_to_bf16(rng.normal(0.0, std, size=shape).astype(np.float32))

    def norm_weight(n):
        return round_to_bf16((1.0 + rng.normal(0.0, 0.1, size=(n,))).astype(np.float32))

    # Tied models read logits off the embedding: keep it smaller so the
    # residual stream is not just the current token's own embedding.
    w["model.embed_tokens.weight"] = normal((V, H), 0.1 if spec["tie"] else 1.0)
    for L in range(spec["layers"]):
        p = "model.layers.%d." % L
        w[p + "input_layernorm.weight"] = norm_weight(H)
        w[p + "self_attn.q_proj.weight"] = normal((nh * hd, H), 0.15)
        w[p + "self_attn.k_proj.weight"] = normal((nkv * hd, H), 0.15)
        w[p + "self_attn.v_proj.weight"] = normal((nkv * hd, H), 0.1)
        if spec["qkv_bias"]:
            w[p + "self_attn.q_proj.bias"] = normal((nh * hd,), 0.1)
            w[p + "self_attn.k_proj.bias"] = normal((nkv * hd,), 0.1)
            w[p + "self_attn.v_proj.bias"] = normal((nkv * hd,), 0.1)
        w[p + "self_attn.o_proj.weight"] = normal((H, nh * hd), 0.1)
        if spec["qk_norm"] == "head":
            w[p + "self_attn.q_norm.weight"] = norm_weight(hd)
            w[p + "self_attn.k_norm.weight"] = norm_weight(hd)
        elif spec["qk_norm"] == "full":
            w[p + "self_attn.q_norm.weight"] = norm_weight(nh * hd)
            w[p + "self_attn.k_norm.weight"] = norm_weight(nkv * hd)
        w[p + "post_attention_layernorm.weight"] = norm_weight(H)
        if not is_moe(spec):
            F = spec["intermediate"]
            w[p + "mlp.gate_proj.weight"] = normal((F, H), 0.1)
            w[p + "mlp.up_proj.weight"] = normal((F, H), 0.1)
            w[p + "mlp.down_proj.weight"] = normal((H, F), 0.1)
            continue
        E, F = spec["experts"], expert_width(spec)
        if spec["family"] == "mixtral":
            w[p + "block_sparse_moe.gate.weight"] = normal((E, H), 0.2)
            for e in range(E):
                q = p + "block_sparse_moe.experts.%d." % e
                w[q + "w1.weight"] = normal((F, H), 0.1)  # gate
                w[q + "w2.weight"] = normal((H, F), 0.1)  # down
                w[q + "w3.weight"] = normal((F, H), 0.1)  # up
        else:
            w[p + "mlp.gate.weight"] = normal((E, H), 0.2)
            for e in range(E):
                q = p + "mlp.experts.%d." % e
                w[q + "gate_proj.weight"] = normal((F, H), 0.1)
                w[q + "up_proj.weight"] = normal((F, H), 0.1)
                w[q + "down_proj.weight"] = normal((H, F), 0.1)
            if spec["shared_intermediate"]:
                S = spec["shared_intermediate"]
                q = p + "mlp.shared_expert."
                w[q + "gate_proj.weight"] = normal((S, H), 0.1)
                w[q + "up_proj.weight"] = normal((S, H), 0.1)
                w[q + "down_proj.weight"] = normal((H, S), 0.1)
                w[p + "mlp.shared_expert_gate.weight"] = normal((1, H), 0.2)
    w["model.norm.weight"] = norm_weight(H)
    if not spec["tie"]:
        w["lm_head.weight"] = normal((V, H), 0.25)
    return w


def expert_names(spec, L, e):
    """HF names of expert e's (gate, up, down) projections in layer L."""
    if spec["family"] == "mixtral":
        q = "model.layers.%d.block_sparse_moe.experts.%d." % (L, e)
        return q + "w1.weight", q + "w3.weight", q + "w2.weight"
    q = "model.layers.%d.mlp.experts.%d." % (L, e)
    return q + "gate_proj.weight", q + "up_proj.weight", q + "down_proj.weight"


def router_name(spec, L):
    if spec["family"] == "mixtral":
        return "model.layers.%d.block_sparse_moe.gate.weight" % L
    return "model.layers.%d.mlp.gate.weight" % L


# ---------------------------------------------------------------------------
# Hugging Face files
# ---------------------------------------------------------------------------

def hf_config(spec):
    ids = special_ids(spec)
    c = {
        "architectures": [spec["hf_arch"]],
        "model_type": spec["model_type"],
        "vocab_size": spec["vocab"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": spec["max_pos"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_scaling": None,
        "tie_word_embeddings": spec["tie"],
        "attention_bias": spec["qkv_bias"],
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": ids["endoftext"],
        "eos_token_id": ids["im_end"],
        "torch_dtype": "float32",
    }
    fam = spec["family"]
    if fam == "llama":
        c["mlp_bias"] = False
        c["pretraining_tp"] = 1
    if fam in ("qwen2", "qwen3", "qwen2moe", "qwen3moe"):
        c["use_sliding_window"] = False
        c["sliding_window"] = None
        c["max_window_layers"] = spec["layers"]
    if fam == "mistral":
        c["sliding_window"] = spec["sliding_window"]
    if fam == "mixtral":
        c["num_local_experts"] = spec["experts"]
        c["num_experts_per_tok"] = spec["topk"]
        c["router_aux_loss_coef"] = 0.02
        c["output_router_logits"] = False
        c["sliding_window"] = None
    if fam in ("qwen2moe", "qwen3moe", "olmoe"):
        c["num_experts"] = spec["experts"]
        c["num_experts_per_tok"] = spec["topk"]
        c["norm_topk_prob"] = spec["norm_topk"]
        c["router_aux_loss_coef"] = 0.001
        c["output_router_logits"] = False
    if fam in ("qwen2moe", "qwen3moe"):
        c["moe_intermediate_size"] = spec["moe_intermediate"]
        c["decoder_sparse_step"] = 1
        c["mlp_only_layers"] = []
    if fam == "qwen2moe":
        c["shared_expert_intermediate_size"] = spec["shared_intermediate"]
    if fam == "olmoe":
        c["clip_qkv"] = None
        c["pad_token_id"] = ids["endoftext"]
    return c


def write_safetensors(path, tensors, dtype="F32"):
    """Writes tensors (name -> float32 array) in the safetensors format."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "F32":
            data = a.astype("<f4").tobytes()
        elif dtype == "BF16":
            bits = a.view(np.uint32)
            assert np.array_equal(round_to_bf16(a).view(np.uint32), bits), name
            data = (bits >> 16).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)
    return offset


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_hf_dir(out, spec, weights, tok, dtype="F32", shards=1):
    os.makedirs(out, exist_ok=True)
    cfg = hf_config(spec)
    cfg["torch_dtype"] = "bfloat16" if dtype == "BF16" else "float32"
    write_json(os.path.join(out, "config.json"), cfg)
    tokens, merges, types = tok
    write_json(os.path.join(out, "tokenizer.json"), hf_tokenizer_json(tokens, merges, types))
    ids = special_ids(spec)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[ids["endoftext"]],
        "eos_token": tokens[ids["im_end"]],
        "pad_token": tokens[ids["endoftext"]],
        "unk_token": None,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec["max_pos"],
        "chat_template": CHAT_TEMPLATE,
    })
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), weights, dtype)
        return
    names = list(weights)  # creation order: embeddings, layer 0, layer 1, ...
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    total = 0
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {n: weights[n] for n in names[s * per:(s + 1) * per]}
        total += write_safetensors(os.path.join(out, fname), part, dtype)
        for n in part:
            weight_map[n] = fname
    write_json(os.path.join(out, "model.safetensors.index.json"),
               {"metadata": {"total_size": total},
                "weight_map": {n: weight_map[n] for n in sorted(weight_map)}})


# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------

def permute_for_llama_rope(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF rotate_half layout ->
    llama.cpp's interleaved (normal) RoPE layout, per head."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def gguf_tensors(spec, w):
    """GGUF tensor name -> float32 numpy array (numpy shape is ggml ne reversed)."""
    out = {}
    permute = spec["gguf_arch"] == "llama"
    nh, nkv = spec["heads"], spec["kv_heads"]
    out["token_embd.weight"] = w["model.embed_tokens.weight"]
    for L in range(spec["layers"]):
        p = "model.layers.%d." % L
        b = "blk.%d." % L
        out[b + "attn_norm.weight"] = w[p + "input_layernorm.weight"]
        for proj, name, heads in (("q", "attn_q", nh), ("k", "attn_k", nkv), ("v", "attn_v", 0)):
            t = w[p + "self_attn.%s_proj.weight" % proj]
            if permute and heads:
                t = permute_for_llama_rope(t, heads)
            out[b + name + ".weight"] = t
            bias = w.get(p + "self_attn.%s_proj.bias" % proj)
            if bias is not None:
                if permute and heads:
                    bias = permute_for_llama_rope(bias, heads)
                out[b + name + ".bias"] = bias
        out[b + "attn_output.weight"] = w[p + "self_attn.o_proj.weight"]
        if spec["qk_norm"]:
            out[b + "attn_q_norm.weight"] = w[p + "self_attn.q_norm.weight"]
            out[b + "attn_k_norm.weight"] = w[p + "self_attn.k_norm.weight"]
        out[b + "ffn_norm.weight"] = w[p + "post_attention_layernorm.weight"]
        if not is_moe(spec):
            out[b + "ffn_gate.weight"] = w[p + "mlp.gate_proj.weight"]
            out[b + "ffn_up.weight"] = w[p + "mlp.up_proj.weight"]
            out[b + "ffn_down.weight"] = w[p + "mlp.down_proj.weight"]
            continue
        out[b + "ffn_gate_inp.weight"] = w[router_name(spec, L)]
        names = [expert_names(spec, L, e) for e in range(spec["experts"])]
        out[b + "ffn_gate_exps.weight"] = np.stack([w[n[0]] for n in names])  # [E, F, H]
        out[b + "ffn_up_exps.weight"] = np.stack([w[n[1]] for n in names])    # [E, F, H]
        out[b + "ffn_down_exps.weight"] = np.stack([w[n[2]] for n in names])  # [E, H, F]
        if spec["shared_intermediate"]:
            q = p + "mlp.shared_expert."
            out[b + "ffn_gate_shexp.weight"] = w[q + "gate_proj.weight"]
            out[b + "ffn_up_shexp.weight"] = w[q + "up_proj.weight"]
            out[b + "ffn_down_shexp.weight"] = w[q + "down_proj.weight"]
            out[b + "ffn_gate_inp_shexp.weight"] = w[p + "mlp.shared_expert_gate.weight"].reshape(-1)
    out["output_norm.weight"] = w["model.norm.weight"]
    if not spec["tie"]:
        out["output.weight"] = w["lm_head.weight"]
    return out


def write_gguf(path, spec, w, tok):
    import gguf  # PyPI package "gguf"

    arch = spec["gguf_arch"]
    tokens, merges, types = tok
    ids = special_ids(spec)
    g = gguf.GGUFWriter(path, arch)
    g.add_name("shardserve-tiny-" + spec["family"])
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    g.add_vocab_size(spec["vocab"])
    g.add_context_length(spec["max_pos"])
    g.add_embedding_length(spec["hidden"])
    g.add_block_count(spec["layers"])
    if spec["family"] == "olmoe":
        g.add_feed_forward_length(spec["moe_intermediate"])
    else:
        g.add_feed_forward_length(spec["intermediate"])
    g.add_head_count(spec["heads"])
    g.add_head_count_kv(spec["kv_heads"])
    g.add_key_length(spec["head_dim"])
    g.add_value_length(spec["head_dim"])
    g.add_rope_dimension_count(spec["head_dim"])
    g.add_rope_freq_base(spec["rope_theta"])
    g.add_layer_norm_rms_eps(spec["eps"])
    if is_moe(spec):
        g.add_expert_count(spec["experts"])
        g.add_expert_used_count(spec["topk"])
        if spec["moe_intermediate"]:
            g.add_expert_feed_forward_length(spec["moe_intermediate"])
        if spec["shared_intermediate"]:
            g.add_expert_shared_feed_forward_length(spec["shared_intermediate"])
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("gpt-2")
    g.add_token_list(tokens)
    g.add_token_types(types)
    g.add_token_merges(merges)
    g.add_bos_token_id(ids["endoftext"])
    g.add_eos_token_id(ids["im_end"])
    g.add_pad_token_id(ids["endoftext"])
    g.add_add_bos_token(False)
    g.add_chat_template(CHAT_TEMPLATE)
    for name, t in gguf_tensors(spec, w).items():
        g.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


# ---------------------------------------------------------------------------
# Reference forward pass (numpy, float64, Hugging Face semantics)
# ---------------------------------------------------------------------------

def _rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _rope_rotate_half(x, pos, theta):
    """x: [T, heads, D]; HF apply_rotary_pos_emb with rotate_half."""
    D = x.shape[-1]
    inv_freq = 1.0 / (theta ** (np.arange(0, D, 2, dtype=np.float64) / D))
    ang = pos[:, None].astype(np.float64) * inv_freq[None, :]  # [T, D/2]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rot = np.concatenate([-x2, x1], axis=-1)
    return x * cos + rot * sin


def hf_forward(spec, weights, ids, stats=None):
    """Logits [len(ids), vocab] (float64) for the prompt `ids` at positions 0..n-1.

    If `stats` is a dict, it receives 'router_gap_min': the smallest gap between
    the k-th and (k+1)-th router logits over all tokens and layers (how close
    top-k routing came to a tie).
    """
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    T = len(ids)
    nh, nkv, hd = spec["heads"], spec["kv_heads"], spec["head_dim"]
    eps = spec["eps"]
    pos = np.arange(T)
    x = w["model.embed_tokens.weight"][np.asarray(ids)]
    router_gap = np.inf
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for L in range(spec["layers"]):
        p = "model.layers.%d." % L
        h = _rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = h @ w[p + "self_attn.q_proj.weight"].T
        k = h @ w[p + "self_attn.k_proj.weight"].T
        v = h @ w[p + "self_attn.v_proj.weight"].T
        if spec["qkv_bias"]:
            q = q + w[p + "self_attn.q_proj.bias"]
            k = k + w[p + "self_attn.k_proj.bias"]
            v = v + w[p + "self_attn.v_proj.bias"]
        if spec["qk_norm"] == "full":
            q = _rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = _rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q.reshape(T, nh, hd)
        k = k.reshape(T, nkv, hd)
        v = v.reshape(T, nkv, hd)
        if spec["qk_norm"] == "head":
            q = _rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = _rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = _rope_rotate_half(q, pos, spec["rope_theta"])
        k = _rope_rotate_half(k, pos, spec["rope_theta"])
        group = nh // nkv
        attn = np.empty((T, nh, hd))
        for hh in range(nh):
            kv = hh // group
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            attn[:, hh, :] = s @ v[:, kv, :]
        x = x + attn.reshape(T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if not is_moe(spec):
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (_silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
            continue
        E, K = spec["experts"], spec["topk"]
        logits = h @ w[router_name(spec, L)].T  # [T, E]
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        order = np.argsort(-logits, axis=-1, kind="stable")
        srt = np.take_along_axis(logits, order, axis=-1)
        router_gap = min(router_gap, float(np.min(srt[:, K - 1] - srt[:, K])))
        top = order[:, :K]
        topw = np.take_along_axis(probs, top, axis=-1)
        if spec["norm_topk"]:
            topw = topw / topw.sum(axis=-1, keepdims=True)
        out = np.zeros_like(h)
        for e in range(E):
            gn, un, dn = expert_names(spec, L, e)
            sel = np.nonzero(top == e)
            if len(sel[0]) == 0:
                continue
            rows = sel[0]
            he = h[rows]
            y = (_silu(he @ w[gn].T) * (he @ w[un].T)) @ w[dn].T
            out[rows] += topw[sel][:, None] * y
        if spec["shared_intermediate"]:
            s = p + "mlp.shared_expert."
            y = (_silu(h @ w[s + "gate_proj.weight"].T) * (h @ w[s + "up_proj.weight"].T)) \
                @ w[s + "down_proj.weight"].T
            gate = 1.0 / (1.0 + np.exp(-(h @ w[p + "mlp.shared_expert_gate.weight"].T)))
            out += gate * y
        x = x + out
    x = _rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if spec["tie"] else w["lm_head.weight"]
    if stats is not None:
        stats["router_gap_min"] = None if router_gap == np.inf else router_gap
    return x @ head.T


# ---------------------------------------------------------------------------

def generate(family, out, extra_copies=False):
    spec = family_spec(family)
    weights = make_weights(spec)
    tok = make_tokenizer(spec["vocab"])
    write_hf_dir(out, spec, weights, tok)
    write_gguf(os.path.join(out, "model.gguf"), spec, weights, tok)
    if extra_copies:
        write_hf_dir(os.path.join(out, "bf16"), spec, weights, tok, dtype="BF16")
        write_hf_dir(os.path.join(out, "sharded"), spec, weights, tok, shards=2)
    return spec, weights, tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=sorted(FAMILIES))
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--extra-copies", action="store_true",
                    help="also write a BF16 copy (OUT/bf16) and a 2-shard copy (OUT/sharded)")
    ap.add_argument("--list", action="store_true", help="print the families and exit")
    args = ap.parse_args()
    if args.list:
        for name in FAMILIES:
            print(name)
        return 0
    if not args.family or not args.out:
        ap.error("--family and --out are required")
    generate(args.family, args.out, args.extra_copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
