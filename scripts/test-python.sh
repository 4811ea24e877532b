#!/usr/bin/env bash
# The Python package's tests (crates/sinkscope-py): a venv with pinned maturin/numpy/pandas/
# pytest from PyPI, the wheel built with the dev profile into the workspace's target dir (the
# library crates are already built there by `cargo test --workspace`), installed, then pytest.
# Run by scripts/test.sh after `cargo test --workspace` (it uses target/debug/sinkscope for the
# byte-identity tests). Outside CI a failure to set up the venv skips, loudly; under CI=true it
# is a failure. SINKSCOPE_PYTHON_TESTS=0 skips.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SINKSCOPE_PYTHON_TESTS:-1}" = 0 ]; then
    echo "SINKSCOPE_PYTHON_TESTS=0: Python package tests SKIPPED" >&2
    exit 0
fi
start=$(date +%s)
VENV=target/pyvenv
PY="${PYTHON:-python3}"
fail_setup() {
    if [ "${CI:-}" = true ]; then
        echo "CI=true: $1" >&2
        exit 1
    fi
    echo "warning: $1; the Python package tests are SKIPPED" >&2
    exit 0
}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" >/dev/null 2>&1 || fail_setup "cannot create a venv with $PY -m venv"
fi
# Pinned; the notebook test also needs nbclient, ipykernel and matplotlib.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    maturin==1.16.0 numpy==2.4.6 pandas==3.1.1 pytest==9.2.0 \
    nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 matplotlib==3.11.2 >/dev/null 2>&1 \
    || fail_setup "cannot pip install maturin, numpy, pandas, pytest, nbclient, ipykernel, matplotlib"
rm -rf target/wheels-py
# The dev profile (not release: CI time), the workspace target dir.
"$VENV/bin/maturin" build --quiet --profile dev --manifest-path crates/sinkscope-py/Cargo.toml \
    --interpreter "$VENV/bin/python" --out target/wheels-py
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels-py/sinkscope-*.whl
built=$(date +%s)
"$VENV/bin/python" -m pytest -q crates/sinkscope-py/tests
end=$(date +%s)
echo "Python package: venv + wheel $((built - start)) s, pytest $((end - built)) s" >&2
