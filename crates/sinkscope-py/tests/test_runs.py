"""profile / lens / probe / ablate through Python write the CLI's bytes; Run's DataFrames
follow the schema."""

import json
import subprocess

import pytest

import sinkscope
from conftest import FIXTURES, cli_binary, require_smollm2

PROMPTS = [
    {"id": "math", "text": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."},
    {"id": "cat", "text": "The cat sat on the mat and looked out of the window at the rain."},
    {"id": "code", "text": "def add(a, b):\n    return a + b"},
    {"id": "short", "text": "Paris is the capital of France."},
]

#: Manifest fields that differ between any two runs (README: timings and command line).
VOLATILE = {("tool", "command_line"), ("timings",), ("model", "load_s"), ("load_s",), ("execution", "rayon_num_threads"),
            # The memory the OS reports free changes from one moment to the next.
            ("memory", "available_bytes")}


def strip(manifest):
    m = json.loads(json.dumps(manifest))
    for path in VOLATILE:
        node = m
        for k in path[:-1]:
            node = node.get(k, {})
        node.pop(path[-1], None)
    return m


def write_prompts(path):
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return path


@pytest.fixture(scope="module")
def smollm2():
    return sinkscope.load(require_smollm2())


def files_of(d):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


#: Each command's CLI arguments besides the model and --out, and the same run from Python.
RUNS = {
    "profile": (lambda p, d: ["--prompts", str(p)], lambda m, p, d, out: sinkscope.profile(m, p, out=out, progress=False)),
    "lens": (lambda p, d: ["--prompts", str(p)], lambda m, p, d, out: sinkscope.lens(m, p, out=out, progress=False)),
    # A labelled dataset (vaderSentiment from PyPI), a seeded sample of 30 sentences.
    "probe": (lambda p, d: ["--dataset", "sst2-like", "--limit", "30", "--folds", "3", "--data-dir", str(d)],
              lambda m, p, d, out: sinkscope.probe(m, dataset="sst2-like", limit=30, folds=3, data_dir=d, out=out,
                                                   progress=False)),
    "ablate": (lambda p, d: ["--prompts", str(p), "--scales", "1,0", "--limit", "2"],
               lambda m, p, d, out: sinkscope.ablate(m, p, limit=2, scales=[1, 0], out=out, progress=False)),
}


@pytest.mark.parametrize("command", list(RUNS))
def test_python_run_writes_the_cli_bytes(smollm2, tmp_path, command):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    data_dir = tmp_path / "data"
    cli_args, py_run = RUNS[command]
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    subprocess.run([str(cli_binary()), command, str(smollm2.path), *cli_args(prompts, data_dir), "--quiet",
                    "--out", str(cli_out)], check=True, stdout=subprocess.DEVNULL)
    run = py_run(smollm2, prompts, data_dir, py_out)
    assert isinstance(run, sinkscope.Run) and run.path == py_out
    assert files_of(cli_out) == files_of(py_out)
    for name in files_of(cli_out):
        if name.endswith("manifest.json") or name.endswith("report.html"):
            continue
        assert (cli_out / name).read_bytes() == (py_out / name).read_bytes(), f"{command}: {name} differs"
    for name in files_of(cli_out):
        if name.endswith("manifest.json"):
            cli_m = json.loads((cli_out / name).read_text())
            py_m = json.loads((py_out / name).read_text())
            assert strip(cli_m) == strip(py_m), f"{command}: {name} differs"
    if command == "ablate":
        assert run.kind == "ablate" and run.is_ablate
        assert run.ablation.to_dict()["scales"] == [1.0, 0.0]
        assert list(run.dose_response["scale"]) == [1.0, 0.0]
        assert run.sub_run("scale_0").kind == "profile"


def test_layers_dataframe_follows_the_schema(smollm2, tmp_path):
    run = sinkscope.profile(smollm2, [p["text"] for p in PROMPTS[:2]], out=tmp_path / "run", progress=False)
    df = run.layers
    n_layers = smollm2.config["n_layers"]
    assert len(df) == n_layers + 1
    assert list(df.columns[:2]) == ["layer", "depth"]
    assert df["layer"].tolist() == list(range(n_layers + 1))
    metrics = run.metrics
    curves = {m for m in metrics["metrics"].keys()}
    for col in df.columns[2:]:
        name, suffix = col.rsplit("_", 1) if not col.endswith(("_ci_low", "_ci_high")) else col.rsplit("_ci_", 1)
        assert name in curves, f"layers.csv column {col}: no metric {name} in metrics.json"
    for m in ("bos_ratio", "entropy_norm", "sink_rate"):
        assert f"{m}_mean" in df.columns
    # The typed summary as Python objects.
    assert isinstance(metrics.summary.peak_bos_ratio.layer, int)
    assert run.prompts["id"].tolist() == ["1", "2"]
    assert run.summary["n_prompts"] == 2 and run.summary["bound_violations"] == 0
    assert run.report_path.is_file()
    html = run._repr_html_()
    assert "data:image/png;base64," in html and "peak_bos_ratio" in html
    reopened = sinkscope.open_run(run.path)
    assert reopened.metrics.to_dict() == metrics.to_dict()


def test_compare_overlays_runs(tmp_path):
    model = sinkscope.load(FIXTURES / "models" / "llama")
    runs = [sinkscope.profile(model, ["The cat sat on the mat.", "One two three four five."], out=tmp_path / f"r{i}", bos=b, progress=False)
            for i, b in enumerate(["auto", "never"])]
    html = sinkscope.compare(runs, out=tmp_path / "cmp")
    assert html.name == "compare.html" and html.is_file()


def test_in_memory_prompts_need_no_file(tmp_path):
    model = sinkscope.load(FIXTURES / "models" / "llama")
    run = sinkscope.profile(model, [("a", "The cat sat on the mat."), ("b", "One two three four.")], progress=False, report=False)
    assert [r["id"] for r in run.prompt_records()] == ["a", "b"]
    assert "<python list>" in json.dumps(run.manifest["data"])
