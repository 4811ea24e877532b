#!/usr/bin/env bash
# Benchmark only (never run by CI or the tests): one `sinkscope profile` on a large checkpoint
# (the generator's 8B/70B files, see BENCHMARKS.md), sampling the process every 5 s for its
# peak RSS (VmHWM) and the bytes it has read from disk (/proc/PID/io read_bytes), and printing
# the run's own summary line, the wall time, the CPU time and the mean disk read rate.
#
#   scripts/bench_big.sh MODEL PROMPTS OUT [extra profile options...]
#
# Environment: SINKSCOPE_BIN (default target/release/sinkscope).
set -euo pipefail
MODEL="${1:?model}"; PROMPTS="${2:?prompts.jsonl}"; OUT="${3:?out dir}"; shift 3
BIN="${SINKSCOPE_BIN:-target/release/sinkscope}"
LOG="$(mktemp)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')), $(nproc) logical cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM"
if [ -d "$MODEL" ]; then size=$(du -sb "$MODEL" | cut -f1); else size=$(stat -c %s "$MODEL"); fi
echo "model: $MODEL ($size bytes)"
start=$(date +%s.%N)
/usr/bin/time -f "TIME %e %U %S %M" "$BIN" profile "$MODEL" --prompts "$PROMPTS" --no-report --force --out "$OUT" "$@" >"$LOG" 2>&1 &
tpid=$!
sleep 1
pid=$(pgrep -P "$tpid" | head -1 || true)
hwm=0; read_bytes=0
while kill -0 "$tpid" 2>/dev/null; do
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
        h=$(awk '/VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        r=$(awk '/^read_bytes/{print $2}' "/proc/$pid/io" 2>/dev/null || echo 0)
        [ "${h:-0}" -gt "$hwm" ] && hwm=$h
        [ "${r:-0}" -gt "$read_bytes" ] && read_bytes=$r
        echo "$(date +%s) rss_hwm_kib=$h read_bytes=$r" >>"$LOG.samples"
    fi
    sleep 5
done
wait "$tpid" || { tail -20 "$LOG"; exit 1; }
end=$(date +%s.%N)
tr '\r' '\n' <"$LOG" | grep -E "^(note|warning|[0-9]+ prompts)" || true
read -r _ wall user sys maxrss < <(grep '^TIME' "$LOG")
python3 - "$wall" "$user" "$sys" "$maxrss" "$hwm" "$read_bytes" <<'PY'
import sys
wall, user, sys_, maxrss, hwm, rb = map(float, sys.argv[1:])
print(f"wall {wall:.0f} s, CPU {user + sys_:.0f} s ({user:.0f} user + {sys_:.0f} sys)")
print(f"peak RSS: time -v {maxrss / 1024:.0f} MiB, sampled VmHWM {hwm / 1024:.0f} MiB")
print(f"read from disk: {rb / 1e9:.1f} GB, {rb / 1e6 / wall:.0f} MB/s over the whole run")
PY
echo "samples: $LOG.samples"
