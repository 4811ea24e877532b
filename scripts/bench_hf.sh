#!/usr/bin/env bash
# Benchmark only (never run by CI or the tests): sinkscope `profile` against Hugging Face
# transformers on SmolLM2-135M-Instruct (GGUF Q4_1), measured in one run on one machine.
#
#   scripts/bench_hf.sh [REPEATS]          (default 3; best of REPEATS for both sides)
#
# 1. Builds sinkscope (release) and runs `sinkscope bench MODEL --repeat REPEATS --lens`: the
#    8 reference prompts and gsm8k-like x64 through `profile` (forward pass + every metric),
#    plus LogitLens.
# 2. Creates a venv (.venv-bench-hf, pinned: torch 2.15.0 from PyPI, transformers 5.24.0,
#    gguf 0.19.0, accelerate 1.15.0 (transformers needs it to load a GGUF), numpy 2.4.6) and runs transformers f32 eager (the GGUF dequantised to f32 by
#    transformers' GGUF loader), batch size 1, output_hidden_states=True and
#    output_attentions=True, forward only (no metrics), on exactly the token ids sinkscope
#    used (read from the bench runs' prompts.jsonl), with torch's threads = the cores
#    available. One warm-up pass, then REPEATS timed passes over all prompts; best reported.
# 3. Prints both tables and the ratio.
#
# Environment: BENCH_HF_VENV (venv folder), SINKSCOPE_BIN (skip the build and use this
# binary), MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf), BENCH_LENS=0 (skip the
# lens workload, which takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-3}"
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
VENV="${BENCH_HF_VENV:-.venv-bench-hf}"
OUT=target/bench-hf
PINS=(torch==2.15.0 transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0 numpy==2.4.6 tokenizers==0.23.3 safetensors==0.8.0)

if [ ! -f "$MODEL" ]; then
    cargo run --quiet -p sinkscope-cli -- fetch smollm2 --dir models >/dev/null
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, transformers, gguf, accelerate" >/dev/null 2>&1; then
    echo "setting up $VENV (${PINS[*]})..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "${PINS[@]}"
fi
if [ "${1:-}" = "--setup-only" ]; then exit 0; fi

if [ -z "${SINKSCOPE_BIN:-}" ]; then
    nice -n 10 cargo build --release -p sinkscope-cli
    SINKSCOPE_BIN=target/release/sinkscope
fi

mkdir -p "$OUT"
echo "== sinkscope bench ($SINKSCOPE_BIN) =="
LENS=(--lens)
if [ "${BENCH_LENS:-1}" = 0 ]; then LENS=(); fi
"$SINKSCOPE_BIN" bench "$MODEL" --repeat "$REPEATS" "${LENS[@]}" --out "$OUT/sinkscope" | tee "$OUT/sinkscope.md"

echo
echo "== Hugging Face transformers (f32 eager, bs 1, hidden states + attentions) =="
TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 \
"$VENV/bin/python" - "$MODEL" "$OUT/sinkscope" "$REPEATS" <<'PY' | tee "$OUT/hf.md"
import json, os, resource, sys, time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

model_path, runs, repeats = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(len(os.sched_getaffinity(0)))
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(
    str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32, attn_implementation="eager"
)
model.eval()
load_s = time.perf_counter() - t0
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
      f"dtype {next(model.parameters()).dtype}, load {load_s:.1f} s")
print()
print("| workload | prompts | tokens | run s (best) | tokens/s (best) | all runs tokens/s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
workloads = [("profile reference prompts (file)", runs / "w0-r0"), ("profile gsm8k-like x64", runs / "w1-r0")]
for name, d in workloads:
    prompts = [json.loads(l)["token_ids"] for l in open(d / "prompts.jsonl") if l.strip()]
    n_tokens = sum(len(p) for p in prompts)
    with torch.inference_mode():
        model(torch.tensor([prompts[0]]), output_hidden_states=True, output_attentions=True)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for ids in prompts:
                out = model(torch.tensor([ids]), output_hidden_states=True, output_attentions=True, use_cache=False)
                assert len(out.hidden_states) == model.config.num_hidden_layers + 1 and out.attentions is not None
            times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best = min(times)
    runs_tps = ", ".join(f"{n_tokens / t:.0f}" for t in times)
    print(f"| {name} | {len(prompts)} | {n_tokens} | {best:.2f} | {n_tokens / best:.0f} | {runs_tps} | {rss:.0f} |")
PY

echo
python3 - "$OUT/sinkscope.md" "$OUT/hf.md" <<'PY'
import sys
def rows(path):
    out = {}
    for line in open(path):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) >= 6 and c[0].startswith("profile ") and c[2].isdigit():
            key = "file" if "(file)" in c[0] else "dataset"
            out[key] = float(c[5] if "sinkscope" in path else c[4])
    return out
s, h = rows(sys.argv[1]), rows(sys.argv[2])
for k in ("file", "dataset"):
    if k in s and k in h:
        print(f"ratio sinkscope profile / transformers ({k} workload): {s[k]:.0f} / {h[k]:.0f} = {s[k] / h[k]:.2f}x")
PY
