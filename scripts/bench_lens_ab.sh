#!/usr/bin/env bash
# Benchmark only (never run by CI or the tests): LogitLens throughput of several sinkscope
# binaries side by side, interleaved round by round on one machine (a ratio measured in one
# run, never against an old absolute number).
#
#   scripts/bench_lens_ab.sh ROUNDS BIN...      e.g. scripts/bench_lens_ab.sh 2 /tmp/old/sinkscope target/release/sinkscope
#
# Each round runs `BIN lens MODEL --dataset wikitext-like --limit $LIMIT --max-tokens 256` for
# every BIN in turn and prints its tokens/s (from the run's own summary line), the wall time
# and the CPU time (user + system, /usr/bin/time). Environment: MODEL (default
# models/SmolLM2-135M-Instruct.Q4_1.gguf), LIMIT (default 4), SINKSCOPE_DATA (the data cache).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:?rounds}"
shift
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
LIMIT="${LIMIT:-4}"
OUT="$(mktemp -d)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')), $(nproc) logical cores"
echo "| round | binary | tokens | run s | tokens/s | wall s | CPU s |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        log="$OUT/log"
        /usr/bin/time -f "TIME %e %U %S" "$bin" lens "$MODEL" --dataset wikitext-like --limit "$LIMIT" \
            --max-tokens 256 --no-report --force --out "$OUT/run" >"$log" 2>&1 || { cat "$log"; exit 1; }
        line=$(tr '\r' '\n' <"$log" | grep -E '^[0-9]+ prompts, [0-9]+ tokens in' | tail -1)
        tokens=$(echo "$line" | sed -E 's/^[0-9]+ prompts, ([0-9]+) tokens in ([0-9.]+)s \(([0-9]+) tokens\/s\).*/\1/')
        run_s=$(echo "$line" | sed -E 's/^[0-9]+ prompts, ([0-9]+) tokens in ([0-9.]+)s.*/\2/')
        read -r _ wall user sys < <(grep '^TIME' "$log")
        tps=$(python3 -c "print(f'{$tokens/$run_s:.1f}')")
        cpu=$(python3 -c "print(f'{$user+$sys:.1f}')")
        echo "| $r | $bin | $tokens | $run_s | $tps | $wall | $cpu |"
    done
done
rm -rf "$OUT"
