#!/usr/bin/env python3
"""Generate the dequantisation test vectors (i-quants, MXFP4, ternary; also F16, BF16, the legacy quants and the
k-quants) and the i-quant lookup tables. Run ONCE, commit the output.

Needs gguf-py 0.19.0 (PyPI `gguf==0.19.0`, which pulls numpy). Python is never needed to build or test sinkscope:
the Rust test `crates/sinkscope-io/tests/dequant_vectors.rs` reads the committed files.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0
    /tmp/gguf-venv/bin/python crates/sinkscope-io/tests/data/dequant/generate.py

Writes, next to this script:
  <type>.bin  raw ggml blocks (n_blocks * type_size bytes), seeded random with sane f16 scales and every grid
              index / sign pattern / scale nibble covered;
  <type>.f32  gguf-py's `gguf.quants.dequantize(raw, type)` output, little-endian f32 (n_blocks * block_size);
  PROVENANCE.md  the gguf/numpy versions, the command and the sha256 of every file.
and crates/sinkscope-io/src/gguf/iq_tables.rs: the lookup tables (ksigns_iq2xs, kvalues_iq4nl, kvalues_mxfp4,
iq2xxs/iq2xs/iq2s/iq3xxs/iq3s/iq1s grids) decoded from gguf-py's packed copies of ggml-common.h's tables,
written in ggml's form (uint64/uint32 per grid row, byte j of the little-endian word = element j).
"""

import hashlib
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants as Q
from gguf.constants import GGML_QUANT_SIZES

GGUF_VERSION = "0.19.0"
SEED = 20240914
HERE = os.path.dirname(os.path.abspath(__file__))
TABLES_RS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "src", "gguf", "iq_tables.rs"))

rng = np.random.default_rng(SEED)


# ---------------------------------------------------------------------------------------------------------------
# Field helpers.


def cover(n, k):
    """n values in 0..k, each value appearing as evenly as possible (concatenated random permutations)."""
    reps = -(-n // k)
    return np.concatenate([rng.permutation(k) for _ in range(reps)])[:n].astype(np.int64)


def scales_f16(n):
    """n sane f16 block scales (bits), random sign, magnitude 2^[-14, 0); the first three are +0, -0 and a subnormal."""
    mag = np.exp2(rng.uniform(-14.0, 0.0, size=n)).astype(np.float16)
    sign = np.where(rng.integers(0, 2, size=n) == 0, 1.0, -1.0).astype(np.float16)
    d = (mag * sign).astype(np.float16)
    if n >= 3:
        d[0] = np.float16(0.0)
        d[1] = np.float16(-0.0)
        d[2] = np.uint16(0x0123).view(np.float16)  # subnormal
    return d.view(np.uint16)


def u16_bytes(a):
    return np.asarray(a, dtype="<u2").view(np.uint8).reshape(a.shape[0], -1)


def u32_bytes(a):
    return np.asarray(a, dtype="<u4").view(np.uint8).reshape(a.shape[0], -1)


def rand_bytes(n, k):
    return rng.integers(0, 256, size=(n, k), dtype=np.uint16).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Block builders: one per type, returning (n_blocks, type_size) uint8.


def gen_iq2_xxs(n):
    # block_iq2_xxs { d; uint16 qs[32] }: per 32 values, 4 grid bytes then u32 (4 x 7-bit sign index | scale << 28).
    d = scales_f16(n)
    grid = cover(n * 32, 256).reshape(n, 8, 4)
    sgn = cover(n * 32, 128).reshape(n, 8, 4)
    sc = cover(n * 8, 16).reshape(n, 8)
    aux1 = sgn[..., 0] | (sgn[..., 1] << 7) | (sgn[..., 2] << 14) | (sgn[..., 3] << 21) | (sc << 28)
    qs = np.concatenate([grid.astype(np.uint8), aux1.astype("<u4").view(np.uint8).reshape(n, 8, 4)], axis=-1)
    return np.concatenate([u16_bytes(d), qs.reshape(n, 64)], axis=1)


def gen_iq2_xs(n):
    # block_iq2_xs { d; uint16 qs[32] (9-bit grid | 7-bit sign index << 9); uint8 scales[8] }
    d = scales_f16(n)
    qs = cover(n * 32, 512) | (cover(n * 32, 128) << 9)
    scales = (cover(n * 8, 16) | (cover(n * 8, 16) << 4)).astype(np.uint8).reshape(n, 8)
    return np.concatenate([u16_bytes(d), u16_bytes(qs.reshape(n, 32)), scales], axis=1)


def gen_iq2_s(n):
    # block_iq2_s { d; uint8 qs[64] (32 grid low bytes, 32 sign bytes); uint8 qh[8] (4 x 2 high bits); scales[8] }
    d = scales_f16(n)
    idx = cover(n * 32, 1024).reshape(n, 8, 4)
    lo = (idx & 0xFF).astype(np.uint8).reshape(n, 32)
    hi = idx >> 8
    qh = (hi[..., 0] | (hi[..., 1] << 2) | (hi[..., 2] << 4) | (hi[..., 3] << 6)).astype(np.uint8)
    signs = cover(n * 32, 256).astype(np.uint8).reshape(n, 32)
    scales = (cover(n * 8, 16) | (cover(n * 8, 16) << 4)).astype(np.uint8).reshape(n, 8)
    return np.concatenate([u16_bytes(d), lo, signs, qh, scales], axis=1)


def gen_iq3_xxs(n):
    # block_iq3_xxs { d; uint8 qs[96] }: 64 grid bytes, then 8 x u32 (4 x 7-bit sign index | scale << 28).
    d = scales_f16(n)
    grid = cover(n * 64, 256).astype(np.uint8).reshape(n, 64)
    sgn = cover(n * 32, 128).reshape(n, 8, 4)
    sc = cover(n * 8, 16).reshape(n, 8)
    aux = sgn[..., 0] | (sgn[..., 1] << 7) | (sgn[..., 2] << 14) | (sgn[..., 3] << 21) | (sc << 28)
    return np.concatenate([u16_bytes(d), grid, u32_bytes(aux)], axis=1)


def gen_iq3_s(n):
    # block_iq3_s { d; uint8 qs[64]; uint8 qh[8] (bit k of qh[b] = bit 8 of index 8b+k); signs[32]; scales[4] }
    d = scales_f16(n)
    idx = cover(n * 64, 512).reshape(n, 8, 8)
    lo = (idx & 0xFF).astype(np.uint8).reshape(n, 64)
    hi = idx >> 8
    qh = np.zeros((n, 8), dtype=np.int64)
    for k in range(8):
        qh |= hi[..., k] << k
    signs = cover(n * 32, 256).astype(np.uint8).reshape(n, 32)
    scales = (cover(n * 4, 16) | (cover(n * 4, 16) << 4)).astype(np.uint8).reshape(n, 4)
    return np.concatenate([u16_bytes(d), lo, qh.astype(np.uint8), signs, scales], axis=1)


def gen_iq1_s(n):
    # block_iq1_s { d; uint8 qs[32]; uint16 qh[8] (4 x 3 high bits | scale << 12 | delta sign << 15) }
    d = scales_f16(n)
    idx = cover(n * 32, 2048).reshape(n, 8, 4)
    lo = (idx & 0xFF).astype(np.uint8).reshape(n, 32)
    hi = idx >> 8
    sc = cover(n * 8, 8).reshape(n, 8)
    sg = cover(n * 8, 2).reshape(n, 8)
    qh = hi[..., 0] | (hi[..., 1] << 3) | (hi[..., 2] << 6) | (hi[..., 3] << 9) | (sc << 12) | (sg << 15)
    return np.concatenate([u16_bytes(d), lo, u16_bytes(qh)], axis=1)


def gen_iq1_m(n):
    # block_iq1_m { uint8 qs[32]; uint8 qh[16] (per nibble: 3 high index bits | delta sign << 3);
    #               uint8 scales[8] = 4 x u16 (4 x 3-bit scales in bits 0..12, f16 d split over the top nibbles) }
    d = scales_f16(n).astype(np.int64)
    idx = cover(n * 32, 2048).reshape(n, 16, 2)
    lo = (idx & 0xFF).astype(np.uint8).reshape(n, 32)
    hi = idx >> 8
    sg = cover(n * 32, 2).reshape(n, 16, 2)
    nib = hi | (sg << 3)
    qh = (nib[..., 0] | (nib[..., 1] << 4)).astype(np.uint8)
    sc = cover(n * 16, 8).reshape(n, 4, 4)
    sc16 = sc[..., 0] | (sc[..., 1] << 3) | (sc[..., 2] << 6) | (sc[..., 3] << 9)
    dparts = np.stack([(d >> 0) & 0xF, (d >> 4) & 0xF, (d >> 8) & 0xF, (d >> 12) & 0xF], axis=1)
    sc16 = sc16 | (dparts << 12)
    return np.concatenate([lo, qh, u16_bytes(sc16)], axis=1)


def gen_iq4_nl(n):
    # block_iq4_nl { d; uint8 qs[16] }
    return np.concatenate([u16_bytes(scales_f16(n)), rand_bytes(n, 16)], axis=1)


def gen_iq4_xs(n):
    # block_iq4_xs { d; uint16 scales_h; uint8 scales_l[4]; uint8 qs[128] }
    return np.concatenate([u16_bytes(scales_f16(n)), rand_bytes(n, 2 + 4 + 128)], axis=1)


def gen_mxfp4(n):
    # block_mxfp4 { uint8 e (E8M0); uint8 qs[16] }: every exponent byte 0..255 (finite in ggml's E8M0 half-scale).
    e = cover(n, 256).astype(np.uint8).reshape(n, 1)
    return np.concatenate([e, rand_bytes(n, 16)], axis=1)


def gen_tq1_0(n):
    # block_tq1_0 { uint8 qs[48]; uint8 qh[4]; d }: any byte (also the >= 243 ones no quantiser writes).
    return np.concatenate([rand_bytes(n, 52), u16_bytes(scales_f16(n))], axis=1)


def gen_tq2_0(n):
    # block_tq2_0 { uint8 qs[64]; d }
    return np.concatenate([rand_bytes(n, 64), u16_bytes(scales_f16(n))], axis=1)


def with_scales(type_size, offsets):
    """Random blocks of `type_size` bytes with sane f16 scales at the byte offsets `offsets` (the existing
    legacy and k-quant types, checked against gguf-py as well)."""

    def gen(n):
        raw = rand_bytes(n, type_size)
        for o in offsets:
            raw[:, o:o + 2] = u16_bytes(scales_f16(n))
        return raw

    return gen


def gen_f16(n):
    # Any non-NaN f16 bit pattern (subnormals, infinities, -0 included).
    bits = np.concatenate([np.array([0x0000, 0x8000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00]),
                           rng.integers(0, 1 << 16, size=n - 7)]).astype(np.uint16)
    nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
    bits[nan] &= 0xFC00
    return u16_bytes(bits.reshape(n, 1))


def gen_bf16(n):
    # Any non-NaN bf16 bit pattern.
    bits = np.concatenate([np.array([0x0000, 0x8000, 0x0001, 0x007f, 0x7f7f, 0x7f80, 0xff80]),
                           rng.integers(0, 1 << 16, size=n - 7)]).astype(np.uint16)
    nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
    bits[nan] &= 0xFF80
    return u16_bytes(bits.reshape(n, 1))


# (type, builder, blocks): enough blocks that every grid index is used at least once.
CASES = [
    (T.IQ4_NL, gen_iq4_nl, 32),
    (T.IQ4_XS, gen_iq4_xs, 16),
    (T.IQ2_XXS, gen_iq2_xxs, 16),
    (T.IQ2_XS, gen_iq2_xs, 16),
    (T.IQ2_S, gen_iq2_s, 32),
    (T.IQ3_XXS, gen_iq3_xxs, 8),
    (T.IQ3_S, gen_iq3_s, 16),
    (T.IQ1_S, gen_iq1_s, 64),
    (T.IQ1_M, gen_iq1_m, 64),
    (T.MXFP4, gen_mxfp4, 256),
    (T.TQ1_0, gen_tq1_0, 16),
    (T.TQ2_0, gen_tq2_0, 16),
    # The types sinkscope already read, against the same reference (appended so the vectors above keep their
    # random streams).
    (T.F16, gen_f16, 2048),
    (T.BF16, gen_bf16, 2048),
    (T.Q4_0, with_scales(18, [0]), 64),
    (T.Q4_1, with_scales(20, [0, 2]), 64),
    (T.Q5_0, with_scales(22, [0]), 64),
    (T.Q5_1, with_scales(24, [0, 2]), 64),
    (T.Q8_0, with_scales(34, [0]), 64),
    (T.Q2_K, with_scales(84, [80, 82]), 8),
    (T.Q3_K, with_scales(110, [108]), 8),
    (T.Q4_K, with_scales(144, [0, 2]), 8),
    (T.Q5_K, with_scales(176, [0, 2]), 8),
    (T.Q6_K, with_scales(210, [208]), 8),
]


# ---------------------------------------------------------------------------------------------------------------
# Lookup tables for the Rust dequantiser.


def grid_rows(cls):
    """The grid of an i-quant class as integer rows (grid_map values, e.g. 0x08/0x19/0x2b or -1/0/1)."""
    cls.init_grid()
    g = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape)
    rows = g.astype(np.int64)
    assert np.array_equal(rows.astype(np.float32), g)
    return rows


def pack_rows(rows):
    """Each row as the little-endian word whose byte j is element j (int8 elements as two's complement)."""
    out = []
    for row in rows:
        w = 0
        for j, v in enumerate(row):
            w |= (int(v) & 0xFF) << (8 * j)
        out.append(w)
    return out


def rust_table(name, ty, values, per_line, fmt, doc):
    lines = [f"/// {doc}", "#[rustfmt::skip]", f"pub(super) static {name}: [{ty}; {len(values)}] = ["]
    for i in range(0, len(values), per_line):
        lines.append("    " + " ".join(fmt(v) + "," for v in values[i:i + per_line]))
    lines.append("];")
    return "\n".join(lines)


def write_tables():
    ksigns = list(np.frombuffer(Q.IQ2_XXS.ksigns, dtype=np.uint8))
    # ksigns_iq2xs[i]: the 7 sign bits of i plus an 8th bit making the number of set bits even.
    for i, v in enumerate(ksigns):
        assert v & 0x7F == i and bin(int(v)).count("1") % 2 == 0
    parts = [
        "//! Lookup tables of ggml's i-quants and MXFP4 (ggml/src/ggml-common.h: `ksigns_iq2xs`, `kvalues_iq4nl`,\n"
        "//! `kvalues_mxfp4`, `iq2xxs_grid`, `iq2xs_grid`, `iq2s_grid`, `iq3xxs_grid`, `iq3s_grid`, `iq1s_grid`).\n"
        "//!\n"
        f"//! @generated by crates/sinkscope-io/tests/data/dequant/generate.py from gguf-py {GGUF_VERSION}\n"
        "//! (`gguf/quants.py`: its packed grids decoded by `init_grid`), in ggml's form: one little-endian word per\n"
        "//! grid row, byte j = element j (`(const uint8_t *)(grid + index)` on a little-endian machine; iq1s bytes are\n"
        "//! int8 -1/0/1). Do not edit by hand: rerun the script (see tests/data/dequant/PROVENANCE.md).",
        rust_table("KSIGNS_IQ2XS", "u8", ksigns, 16, lambda v: f"{int(v):3}",
                   "`ksigns_iq2xs`: 7 sign bits plus an even-parity 8th bit."),
        rust_table("KVALUES_IQ4NL", "i8", list(Q.IQ4_NL.kvalues), 16, lambda v: f"{int(v)}",
                   "`kvalues_iq4nl`: the 16 non-linear levels of IQ4_NL / IQ4_XS."),
        rust_table("KVALUES_MXFP4", "i8", list(Q.MXFP4.kvalues), 16, lambda v: f"{int(v)}",
                   "`kvalues_mxfp4`: E2M1 values, doubled (ggml pairs them with the E8M0 half-scale)."),
    ]
    for name, cls, word in [
        ("IQ2XXS_GRID", Q.IQ2_XXS, 64),
        ("IQ2XS_GRID", Q.IQ2_XS, 64),
        ("IQ2S_GRID", Q.IQ2_S, 64),
        ("IQ3XXS_GRID", Q.IQ3_XXS, 32),
        ("IQ3S_GRID", Q.IQ3_S, 32),
        ("IQ1S_GRID", Q.IQ1_S, 64),
    ]:
        rows = grid_rows(cls)
        assert rows.shape[1] * 8 == word
        vals = pack_rows(rows)
        digits = word // 4
        parts.append(rust_table(name, f"u{word}", vals, 4 if word == 64 else 8,
                                lambda v, d=digits: f"0x{v:0{d}x}",
                                f"`{name.lower()}` ({len(vals)} rows of {rows.shape[1]})."))
    with open(TABLES_RS, "w") as f:
        f.write("\n\n".join(parts) + "\n")


# ---------------------------------------------------------------------------------------------------------------


def main():
    from importlib.metadata import version

    ver = version("gguf")
    if ver != GGUF_VERSION:
        sys.exit(f"need gguf=={GGUF_VERSION}, found {ver}")
    write_tables()
    written = []
    for ty, gen, n in CASES:
        block_size, type_size = GGML_QUANT_SIZES[ty]
        raw = np.ascontiguousarray(gen(n), dtype=np.uint8)
        assert raw.shape == (n, type_size), (ty.name, raw.shape)
        with np.errstate(over="ignore"):
            out = Q.dequantize(raw.reshape(-1), ty)
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        assert out.size == n * block_size
        assert not np.isnan(out).any(), ty.name
        stem = ty.name.lower()
        for ext, data in ((".bin", raw.tobytes()), (".f32", out.astype("<f4").tobytes())):
            path = os.path.join(HERE, stem + ext)
            with open(path, "wb") as f:
                f.write(data)
            written.append(stem + ext)
    sums = []
    for name in written + [TABLES_RS]:
        with open(os.path.join(HERE, name), "rb") as f:
            label = "crates/sinkscope-io/src/gguf/iq_tables.rs" if name == TABLES_RS else name
            sums.append((hashlib.sha256(f.read()).hexdigest(), label))
    total = sum(os.path.getsize(os.path.join(HERE, n)) for n in written)
    with open(os.path.join(HERE, "PROVENANCE.md"), "w") as f:
        f.write(
            "# Dequantisation test vectors\n\n"
            f"Generated once with gguf-py {ver} (PyPI `gguf=={GGUF_VERSION}`), numpy {np.__version__}, "
            f"Python {sys.version.split()[0]}, seed {SEED}:\n\n"
            "```\n"
            "python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0\n"
            "/tmp/gguf-venv/bin/python crates/sinkscope-io/tests/data/dequant/generate.py\n"
            "```\n\n"
            "`<type>.bin` holds whole ggml blocks (seeded random; f16 scales finite, 2^-14..1 plus +0, -0 and a\n"
            "subnormal; every grid index, sign index/byte and scale nibble of the i-quants used; every MXFP4\n"
            "exponent; F16/BF16 any non-NaN bit pattern); `<type>.f32` is\n"
            "`gguf.quants.dequantize(bin, GGMLQuantizationType.<TYPE>)` as little-endian f32. The Rust test\n"
            "`crates/sinkscope-io/tests/dequant_vectors.rs` compares sinkscope's dequantiser with it bit for bit.\n"
            "The same run writes `crates/sinkscope-io/src/gguf/iq_tables.rs` (the grids, decoded from gguf-py).\n"
            f"Vectors: {len(written)} files, {total} bytes.\n\n"
            "sha256:\n\n```\n" + "".join(f"{h}  {n}\n" for h, n in sums) + "```\n"
        )
    print(f"wrote {len(written)} files ({total} bytes) and {TABLES_RS}")


if __name__ == "__main__":
    main()
