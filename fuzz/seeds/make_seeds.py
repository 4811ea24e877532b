#!/usr/bin/env python3
"""Writes small, valid seed inputs for the fuzz targets into fuzz/corpus/<target>/.

Small on purpose (a few KB): libFuzzer mutates them much faster than the fixture files.
Usage: python3 fuzz/seeds/make_seeds.py [corpus_dir]   (default: fuzz/corpus)
"""
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
rng = random.Random(5)

# ---------------------------------------------------------------------------------- GGUF

T_STR, T_ARR, T_U32, T_F32, T_BOOL, T_I32, T_U64 = 8, 9, 4, 6, 7, 5, 10
# ggml type id -> (block size, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
        8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def kv(key, ty, payload):
    return s(key) + struct.pack("<I", ty) + payload


def arr(elem_ty, items):
    return struct.pack("<IQ", elem_ty, len(items)) + b"".join(items)


def tensor_bytes(ty, n):
    bs, ts = GGML[ty]
    nb = n // bs * ts
    if ty == 0:
        return b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n))
    if ty == 1:
        return b"".join(struct.pack("<e", rng.uniform(-1, 1)) for _ in range(n))
    # Quantised / bf16: random bytes with small f16 scales where the layout puts them.
    out = bytearray(rng.getrandbits(8) for _ in range(nb))
    return bytes(out)


def gguf(kvs, tensors, align=32):
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    infos, datas, off = b"", b"", 0
    for name, ne, ty in tensors:
        n = 1
        for d in ne:
            n *= d
        data = tensor_bytes(ty, n)
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", d) for d in ne)
        infos += struct.pack("<IQ", ty, off)
        pad = (-len(data)) % align
        datas += data + b"\0" * pad
        off += len(data) + pad
    h = head + infos
    return h + b"\0" * ((-len(h)) % align) + datas


def llama_gguf(wtype):
    d, heads, kvh, dh, mlp, vocab = 32, 2, 1, 16, 32, 4
    tokens = [b"<s>", b"a", b"b", b"ab"]
    kvs = [
        kv("general.architecture", T_STR, s("llama")),
        kv("general.name", T_STR, s("seed")),
        kv("llama.block_count", T_U32, struct.pack("<I", 1)),
        kv("llama.context_length", T_U32, struct.pack("<I", 16)),
        kv("llama.embedding_length", T_U32, struct.pack("<I", d)),
        kv("llama.feed_forward_length", T_U32, struct.pack("<I", mlp)),
        kv("llama.attention.head_count", T_U32, struct.pack("<I", heads)),
        kv("llama.attention.head_count_kv", T_U32, struct.pack("<I", kvh)),
        kv("llama.attention.layer_norm_rms_epsilon", T_F32, struct.pack("<f", 1e-5)),
        kv("llama.rope.freq_base", T_F32, struct.pack("<f", 10000.0)),
        kv("tokenizer.ggml.model", T_STR, s("gpt2")),
        kv("tokenizer.ggml.pre", T_STR, s("gpt-2")),
        kv("tokenizer.ggml.tokens", T_ARR, arr(T_STR, [s(t) for t in tokens])),
        kv("tokenizer.ggml.token_type", T_ARR, arr(T_I32, [struct.pack("<i", 1)] * len(tokens))),
        kv("tokenizer.ggml.merges", T_ARR, arr(T_STR, [s("a b")])),
        kv("tokenizer.ggml.bos_token_id", T_U32, struct.pack("<I", 0)),
        kv("tokenizer.ggml.add_bos_token", T_BOOL, b"\x00"),
    ]
    t = [
        ("token_embd.weight", [d, vocab], 0),
        ("output_norm.weight", [d], 0),
        ("output.weight", [d, vocab], 0),
        ("blk.0.attn_norm.weight", [d], 0),
        ("blk.0.ffn_norm.weight", [d], 0),
        ("blk.0.attn_q.weight", [d, heads * dh], wtype),
        ("blk.0.attn_k.weight", [d, kvh * dh], wtype),
        ("blk.0.attn_v.weight", [d, kvh * dh], wtype),
        ("blk.0.attn_output.weight", [heads * dh, d], wtype),
        ("blk.0.ffn_gate.weight", [d, mlp], wtype),
        ("blk.0.ffn_up.weight", [d, mlp], wtype),
        ("blk.0.ffn_down.weight", [mlp, d], wtype),
    ]
    return gguf(kvs, t)


def every_type_gguf():
    kvs = [kv("general.architecture", T_STR, s("none")), kv("general.alignment", T_U32, struct.pack("<I", 32))]
    t = []
    for ty, (bs, _) in GGML.items():
        t.append((f"t{ty}", [max(bs, 32), 1], ty))
    return gguf(kvs, t)


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


write("gguf", "llama_f32.gguf", llama_gguf(0))
write("gguf", "llama_q4_0.gguf", llama_gguf(2))
write("gguf", "llama_q8_0.gguf", llama_gguf(8))
write("gguf", "every_type.gguf", every_type_gguf())

# ---------------------------------------------------------------------------------- safetensors


def safetensors(tensors, meta=None):
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = lambda n: b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n))
write("safetensors", "small.safetensors", safetensors(
    [("a.weight", "F32", [2, 3], f32(6)), ("b.bias", "F16", [4], b"\x00\x3c" * 4),
     ("c", "BF16", [2], b"\x80\x3f" * 2), ("empty", "F32", [0, 5], b"")], {"format": "pt"}))
write("safetensors", "ints.safetensors", safetensors([("i", "I32", [3], b"\x01\0\0\0" * 3), ("x", "F64", [1], b"\0" * 8)]))

# ---------------------------------------------------------------------------------- prompts

write("prompts", "jsonl.jsonl", '{"id": "a", "text": "hello world"}\n{"text": "second"}\n\n{"id": 7, "text": "x"}\n')
write("prompts", "plain.txt", "one prompt\r\nanother one\n")
write("prompts", "unicode.jsonl", '{"id": "\u00e9", "text": "caf\u00e9 \u2615 \\u00e9"}\n')

# Two control bytes (line cap, file cap / --limit) before the file's bytes.
write("prompt_reader", "jsonl_limit1.bin", b"\x41\xff" + b'{"id": "a", "text": "hello"}\n{"text": "two"}\n')
write("prompt_reader", "bom.bin", b"\x40\xff\xef\xbb\xbf" + b'{"text": "x"}\n')
write("prompt_reader", "long_line.bin", b"\x03\x10" + b"abcdefgh\r\nok\n")

# ---------------------------------------------------------------------------------- edits, captures

write("edit_capture", "zero.txt", "blocks.11.hook_mlp_out:pos=0:zero")
write("edit_capture", "scale.txt", "blocks.3.attn.hook_z:head=1,2:pos=0..4:scale=0.5")
write("edit_capture", "set.txt", "hook_embed:pos=0:dim=17:set=0")
write("edit_capture", "capture.txt", "hook_embed,blocks.*.hook_resid_post,blocks.0.attn.hook_pattern")

# ---------------------------------------------------------------------------------- HF configs

for fam in ("llama", "qwen2", "gpt2", "gpt_neox"):
    p = os.path.join(ROOT, "tests", "fixtures", "models", fam, "config.json")
    if os.path.exists(p):
        with open(p, "rb") as f:
            write("hf_config", f"{fam}.json", f.read())
print(f"seeds written under {OUT}")
