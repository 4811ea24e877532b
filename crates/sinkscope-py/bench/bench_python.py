"""Python-side costs (BENCHMARKS.md, "From Python"): the overhead of a Python hook per call, and
profile throughput through Python vs the CLI on the same prompts, threads and build profile.

    python crates/sinkscope-py/bench/bench_python.py [--cli target/debug/sinkscope] [--prompts FILE]
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import sinkscope

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May? She sold 48 / 2 = 24 clips in May.")


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def best(f, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=str(ROOT / "target" / "debug" / "sinkscope"))
    ap.add_argument("--prompts", default=str(ROOT / "data" / "prompts" / "smollm2_reference_a.jsonl"))
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    model = sinkscope.load(MODEL)
    ids = model.tokenize(TEXT)
    L = model.config["n_layers"]
    noop = lambda act, hook: None
    ident = lambda act, hook: act
    every = lambda name: name.endswith("hook_resid_post")
    base = best(lambda: model.run_with_hooks(ids, []), a.reps)
    one = best(lambda: model.run_with_hooks(ids, [("blocks.5.hook_resid_post", noop)]), a.reps)
    many = best(lambda: model.run_with_hooks(ids, [(every, noop)]), a.reps)
    many_ret = best(lambda: model.run_with_hooks(ids, [(every, ident)]), a.reps)
    edit = best(lambda: model.run_with_hooks(ids, [sinkscope.edit_hook("blocks.5.hook_mlp_out:pos=0:zero")]), a.reps)
    out = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "tokens": len(ids), "n_layers": L,
        "forward_ms": base * 1e3,
        "hook_overhead_ms_per_call_noop": (many - base) / L * 1e3,
        "hook_overhead_ms_per_call_returning_array": (many_ret - base) / L * 1e3,
        "one_hook_ms": (one - base) * 1e3,
        "edit_hook_ms": (edit - base) * 1e3,
    }
    pf = Path(a.prompts)
    with tempfile.TemporaryDirectory() as d:
        cli, py = [], []
        for r in range(3):
            o = Path(d) / f"cli{r}"
            subprocess.run([a.cli, "profile", str(MODEL), "--prompts", str(pf), "--quiet", "--no-report", "--out", str(o)], check=True, stdout=subprocess.DEVNULL)
            cli.append(json.loads((o / "manifest.json").read_text())["timings"])
            run = sinkscope.profile(model, pf, out=Path(d) / f"py{r}", report=False, progress=False)
            py.append(run.manifest["timings"])
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            out[f"cli_{key}"] = max(t[key] for t in cli)
            out[f"python_{key}"] = max(t[key] for t in py)
            out[f"python_vs_cli_{key}"] = out[f"python_{key}"] / out[f"cli_{key}"]
        out["profile_tokens"] = run.summary["n_tokens"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
