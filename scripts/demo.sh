#!/usr/bin/env bash
# Sets everything up and runs the main job on the demo model (SmolLM2-135M-Instruct, Q4_1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sinkscope-cli
bin=target/release/sinkscope
model=$($bin fetch smollm2 --dir models)
out=${1:-out/demo}
$bin inspect "$model"
$bin run "$model" --prompts data/prompts/smollm2_reference_a.jsonl \
  --capture 'hook_embed,blocks.*.hook_resid_post' --out "$out"
$bin run "$model" --prompts data/prompts/smollm2_reference_a.jsonl \
  --capture 'hook_embed,blocks.*.hook_resid_post' --edit 'blocks.11.hook_mlp_out:pos=0:zero' --out "$out-ablated"
echo "activations: $out/manifest.json (and $out-ablated with block 12's MLP zeroed at position 0)"
