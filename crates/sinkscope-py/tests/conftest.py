"""Shared paths and readers for the Python package's tests (run by scripts/test.sh)."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FAMILIES = [
    "llama", "qwen2", "gpt_neox", "gpt2", "qwen3", "phi3", "gemma2", "gemma3", "olmo2", "bloom",
    "gpt_oss", "gemma", "mistral",
]

_DTYPES = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    """Every tensor of a safetensors file as numpy arrays (an independent reader: the Hugging
    Face references are read without sinkscope)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[key] = np.frombuffer(raw[base + a : base + b], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def cli_binary():
    """The CLI built by `cargo test --workspace` (SINKSCOPE_BIN overrides)."""
    path = Path(os.environ.get("SINKSCOPE_BIN", ROOT / "target" / "debug" / "sinkscope"))
    if not path.is_file():
        pytest.skip(f"{path}: the CLI is not built (cargo build -p sinkscope-cli)")
    return path


def require_smollm2():
    if not SMOLLM2.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SMOLLM2} is missing (scripts/test.sh fetches it)")
        pytest.skip(f"{SMOLLM2} is missing (sinkscope fetch smollm2)")
    return SMOLLM2
