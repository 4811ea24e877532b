"""Runs: `profile`, `lens`, `open_run`, `compare` and the `Run` they return."""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _sinkscope
from ._model import Model

PathLike = Union[str, os.PathLike]
#: Prompts: a prompt file (JSONL or plain text), or texts, or ``(id, text)`` pairs, or
#: ``{"id": ..., "text": ...}`` dicts.
Prompts = Union[PathLike, Sequence[Union[str, Tuple[str, str], Dict[str, str]]]]


class Metrics:
    """``metrics.json`` as Python objects: keys are attributes (``run.metrics.summary.peak_bos_ratio.layer``)
    and items (``run.metrics["metrics"]["bos_ratio"]["mean"]``); :meth:`to_dict` gives the plain JSON."""

    def __init__(self, value: Any):
        self._v = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return _wrap(self._v[name])
        except (KeyError, TypeError):
            raise AttributeError(name) from None

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._v[key])

    def __contains__(self, key: Any) -> bool:
        return key in self._v

    def __iter__(self):
        return iter(self._v)

    def __len__(self) -> int:
        return len(self._v)

    def keys(self):
        return self._v.keys()

    def to_dict(self) -> Any:
        return self._v

    def __repr__(self) -> str:
        if isinstance(self._v, dict):
            return f"Metrics({', '.join(list(self._v)[:12])}{', ...' if len(self._v) > 12 else ''})"
        return f"Metrics({self._v!r})"


def _wrap(v: Any) -> Any:
    return Metrics(v) if isinstance(v, (dict, list)) else v


def _pandas():
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - exercised only without pandas
        raise ImportError("this method returns a pandas DataFrame: pip install pandas") from e
    return pandas


class Run:
    """A run folder written by ``profile``, ``lens``, ``probe`` or ``ablate`` (from Python or
    the CLI): the same files, read back."""

    def __init__(self, path: PathLike, summary: Optional[Dict[str, Any]] = None):
        self.path = Path(path)
        #: What the run reported when it finished (tokens/s, peak RSS, ...); ``None`` when opened.
        self.summary = summary
        if not (self.path / "manifest.json").is_file() and not (self.path / "ablate.json").is_file():
            raise _sinkscope.InputError(f"{self.path}: not a run folder (no manifest.json or ablate.json)")

    def __repr__(self) -> str:
        return f"sinkscope.Run({str(self.path)!r}, kind={self.kind!r})"

    @property
    def manifest(self) -> Dict[str, Any]:
        """``manifest.json`` (model, tokenizer, data, options, timings); for an ablate folder,
        its baseline's."""
        if self.is_ablate:
            return self.sub_run("baseline").manifest
        return json.loads((self.path / "manifest.json").read_text())

    @property
    def is_ablate(self) -> bool:
        """An ablation study's folder (``ablate.json`` and one sub-run per ablation)."""
        return (self.path / "ablate.json").is_file()

    @property
    def kind(self) -> str:
        """``profile``, ``lens``, ``probe``, ``ablate``, ..."""
        if self.is_ablate:
            return "ablate"
        return self.manifest.get("kind", "")

    @property
    def ablation(self) -> Metrics:
        """``ablate.json`` (blocks, valley, dose response, the dimension ablations) as
        attribute-accessible objects (ablate folders only)."""
        return Metrics(json.loads((self.path / "ablate.json").read_text()))

    def sub_run(self, name: str) -> "Run":
        """A sub-run of an ablate folder (``baseline``, ``scale_0``, ``only_12``, ``sun_mean``, ...)."""
        return Run(self.path / name)

    @property
    def dose_response(self):
        """``dose_response.csv`` of an ablate folder as a pandas DataFrame. Needs pandas."""
        return _pandas().read_csv(self.path / "dose_response.csv")

    @property
    def metrics(self) -> Metrics:
        """``metrics.json`` (schema: docs/results-schema.md) as attribute-accessible objects."""
        return Metrics(json.loads((self.path / "metrics.json").read_text()))

    @property
    def layers(self):
        """``layers.csv`` as a pandas DataFrame: one row per layer, the report's columns
        (``<metric>_mean``, ``_std``, ``_ci_low``, ``_ci_high``, ...). Needs pandas."""
        return _pandas().read_csv(self.path / "layers.csv")

    @property
    def prompts(self):
        """``prompts.jsonl`` as a pandas DataFrame, one row per prompt (per-layer metrics as
        lists). Needs pandas."""
        return _pandas().DataFrame(self.prompt_records())

    def prompt_records(self) -> List[Dict[str, Any]]:
        """``prompts.jsonl`` as a list of dicts (no pandas needed)."""
        with open(self.path / "prompts.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    @property
    def report_path(self) -> Path:
        """``report.html`` (self-contained)."""
        return self.path / "report.html"

    def plot(self, name: str = "fig1") -> Path:
        """The PNG of a plot in ``plots/`` (``fig1``: the paper's Fig. 1 panels)."""
        return self.path / "plots" / f"{name}.png"

    def _repr_html_(self) -> str:
        m = self.manifest
        model = m.get("model", {})
        rows = [
            ("kind", m.get("kind")),
            ("model", f"{model.get('family')} — {model.get('path')}"),
            ("prompts", (self.summary or {}).get("n_prompts", "")),
        ]
        try:
            s = self.metrics.to_dict().get("summary", {})
            for key in ("peak_bos_ratio", "min_entropy_norm"):
                v = s.get(key) or {}
                if v.get("value") is not None:
                    rows.append((key, f"{v['value']:.4g} at layer {v.get('layer')}"))
            blocks = [b.get("block") for b in s.get("massive_layers") or []]
            rows.append(("massive-activation blocks", ", ".join(map(str, blocks)) or "none"))
            for key in ("corr_bos_entropy", "corr_bos_sink"):
                if s.get(key) is not None:
                    rows.append((key, f"{s[key]:.3f}"))
        except (OSError, ValueError):
            pass
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        img = ""
        fig = self.plot("fig1")
        if fig.is_file():
            data = base64.b64encode(fig.read_bytes()).decode("ascii")
            img = f"<img style='max-width:100%' src='data:image/png;base64,{data}'/>"
        return f"<div><b>sinkscope run</b> <code>{html.escape(str(self.path))}</code><table>{table}</table>{img}</div>"


def _progress(total_hint: Optional[int], show: bool) -> Tuple[Optional[Callable], Callable[[], None]]:
    """A tqdm bar (the notebook's own where one exists) when tqdm is installed and ``show``."""
    if not show:
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=total_hint, unit="prompt")
    state = {"done": 0}

    def update(done: int, tokens: int, elapsed: float) -> None:
        bar.update(done - state["done"])
        state["done"] = done
        bar.set_postfix(tokens=tokens, tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")

    return update, bar.close


def _input(
    prompts: Optional[Prompts],
    dataset: Optional[str],
    limit: Optional[int],
    max_tokens: Optional[int],
    truncate: bool,
    bos: Optional[str],
    first_token: Optional[Union[int, str]],
    data_dir: Optional[PathLike],
    force: bool,
    resume: bool,
) -> "_sinkscope._Input":
    prompts_file, texts = None, None
    if isinstance(prompts, (str, os.PathLike)):
        prompts_file = os.fspath(prompts)
    elif prompts is not None:
        texts = []
        for i, p in enumerate(prompts, start=1):
            if isinstance(p, str):
                texts.append((str(i), p))
            elif isinstance(p, dict):
                texts.append((str(p.get("id", i)), p["text"]))
            else:
                texts.append((str(p[0]), p[1]))
    data_dir = data_dir if data_dir is not None else os.environ.get("SINKSCOPE_DATA", "data/cache")
    return _sinkscope._Input(
        prompts_file=prompts_file,
        texts=texts,
        dataset=dataset,
        limit=limit,
        max_tokens=max_tokens,
        truncate=truncate,
        bos=bos,
        first_token=None if first_token is None else str(first_token),
        data_dir=os.fspath(data_dir),
        python=os.environ.get("SINKSCOPE_PYTHON", "python3"),
        force=force,
        resume=resume,
    )


def _out(out: Optional[PathLike], kind: str) -> Path:
    if out is not None:
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"sinkscope-{kind}-")) / "run"


def _launch(native: Callable[..., str], kind: str, model: Model, inp: "_sinkscope._Input", out: Optional[PathLike],
            total: Optional[int], progress: bool, **options: Any) -> Run:
    """Runs ``native`` (a ``_sinkscope`` run function) into ``out`` (a fresh temporary folder
    when ``None``) with a progress bar of ``total`` prompts; returns the folder as a ``Run``."""
    dest = _out(out, kind)
    cb, close = _progress(total, progress)
    try:
        s = native(_model(model), inp, os.fspath(dest), progress=cb, **options)
    finally:
        close()
    return Run(dest, json.loads(s))


def _model(model: Model) -> "_sinkscope._Model":
    if not isinstance(model, Model):
        raise TypeError("model must be a sinkscope.Model (sinkscope.load(path))")
    return model._inner


def profile(
    model: Model,
    prompts: Optional[Prompts] = None,
    *,
    dataset: Optional[str] = None,
    out: Optional[PathLike] = None,
    limit: Optional[int] = None,
    max_tokens: Optional[int] = None,
    truncate: bool = False,
    bos: Optional[str] = None,
    first_token: Optional[Union[int, str]] = None,
    epsilon: float = 0.3,
    threads: Optional[int] = None,
    pack_tokens: int = 128,
    report: bool = True,
    force: bool = False,
    resume: bool = False,
    data_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Run:
    """``sinkscope profile``: every metric at every layer of every prompt, into ``out`` (a
    fresh temporary folder when ``None``): ``manifest.json``, ``prompts.jsonl``,
    ``metrics.json`` and (``report=True``) ``layers.csv``, ``plots/``, ``report.html``, the
    same bytes as the CLI's. ``prompts`` is a prompt file or a list of texts; or give
    ``dataset`` (``gsm8k-like``, ``wikitext-like``, ...). ``threads``: prompts at a time
    (default: the cores). Ctrl-C stops between prompts; ``resume=True`` continues."""
    inp = _input(prompts, dataset, limit, max_tokens, truncate, bos, first_token, data_dir, force, resume)
    total = limit if prompts is None else (len(prompts) if not isinstance(prompts, (str, os.PathLike)) else None)
    return _launch(_sinkscope.profile, "profile", model, inp, out, total, progress, epsilon=epsilon, workers=threads,
                   pack_tokens=pack_tokens, report=report)


def lens(
    model: Model,
    prompts: Optional[Prompts] = None,
    *,
    dataset: Optional[str] = None,
    out: Optional[PathLike] = None,
    limit: Optional[int] = None,
    max_tokens: Optional[int] = None,
    truncate: bool = False,
    bos: Optional[str] = None,
    first_token: Optional[Union[int, str]] = None,
    report: bool = True,
    force: bool = False,
    resume: bool = False,
    data_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Run:
    """``sinkscope lens``: LogitLens NLL, perplexity and top-1 accuracy of every layer's
    residual (``metrics.json``, ``layers.csv``, ``report.html``), as the CLI writes them."""
    inp = _input(prompts, dataset, limit, max_tokens, truncate, bos, first_token, data_dir, force, resume)
    return _launch(_sinkscope.lens, "lens", model, inp, out, None, progress, report=report)


def probe(
    model: Model,
    prompts: Optional[Prompts] = None,
    *,
    dataset: Optional[str] = None,
    out: Optional[PathLike] = None,
    limit: Optional[int] = None,
    max_tokens: Optional[int] = None,
    truncate: bool = False,
    bos: Optional[str] = None,
    first_token: Optional[Union[int, str]] = None,
    pool: str = "mean",
    folds: int = 5,
    seed: Optional[int] = None,
    c: Optional[float] = None,
    keep_features: bool = False,
    report: bool = True,
    force: bool = False,
    resume: bool = False,
    data_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Run:
    """``sinkscope probe``: a cross-validated L2 logistic-regression probe of every layer's
    sentence vector (``pool``: ``mean`` over positions >= 1 or ``last``) on a labelled dataset
    (``dataset="sst2-like"``), as the CLI writes it. The sentences are a seeded random sample
    (``seed``) of ``limit`` of them; ``seed`` and ``c`` default to the CLI's."""
    inp = _input(prompts, dataset, limit, max_tokens, truncate, bos, first_token, data_dir, force, resume)
    kw: Dict[str, Any] = {}
    if seed is not None:
        kw["seed"] = seed
    if c is not None:
        kw["c"] = c
    return _launch(_sinkscope.probe, "probe", model, inp, out, limit, progress, pool=pool, folds=folds,
                   keep_features=keep_features, report=report, **kw)


def ablate(
    model: Model,
    prompts: Optional[Prompts] = None,
    *,
    dataset: Optional[str] = None,
    out: Optional[PathLike] = None,
    limit: Optional[int] = None,
    max_tokens: Optional[int] = None,
    truncate: bool = False,
    bos: Optional[str] = None,
    first_token: Optional[Union[int, str]] = None,
    layers: Union[str, Sequence[int]] = "auto",
    scales: Sequence[float] = (1.0, 0.75, 0.5, 0.25, 0.0),
    component: str = "mlp",
    one_by_one: bool = False,
    mean_ablate: bool = False,
    epsilon: float = 0.3,
    report: bool = True,
    force: bool = False,
    data_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> Run:
    """``sinkscope ablate``: the baseline profile and the runs with the massive-activation
    blocks' ``component`` output at position 0 scaled by each λ of ``scales`` (``layers``:
    ``"auto"`` detects the blocks; or block numbers 1..L); ``one_by_one`` also ablates each
    block alone; ``mean_ablate`` also ablates the massive dimensions (Sun et al.'s mean over
    the prompt set, zero, and the mean over the other positions). Writes ``ablate.json``, the
    dose-response table and each sub-run, as the CLI does. Ctrl-C is noticed when it ends."""
    inp = _input(prompts, dataset, limit, max_tokens, truncate, bos, first_token, data_dir, force, False)
    if not isinstance(layers, str):
        layers = ",".join(str(int(b)) for b in layers)
    return _launch(_sinkscope.ablate, "ablate", model, inp, out, None, progress, layers=layers,
                   scales=[float(x) for x in scales], component=component, one_by_one=one_by_one,
                   mean_ablate=mean_ablate, epsilon=epsilon, report=report)


def open_run(path: PathLike) -> Run:
    """Any run folder (``profile``, ``lens``, ``probe``, ``ablate``; from Python or the CLI)."""
    return Run(path)


def compare(runs: Iterable[Union[Run, PathLike]], out: Optional[PathLike] = None, force: bool = False) -> Path:
    """``sinkscope compare``: several runs overlaid on normalised depth; returns the path of
    ``compare.html`` (``compare.csv`` and ``plots/`` beside it)."""
    dirs = [os.fspath(r.path if isinstance(r, Run) else r) for r in runs]
    dest = _out(out, "compare")
    return Path(_sinkscope.compare(dirs, os.fspath(dest), force))
