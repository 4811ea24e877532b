"""Type stubs of the native module (crates/sinkscope-py/src); the public API is in __init__.py."""

from os import PathLike
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__version__: str
EDIT_GRAMMAR: str

class SinkscopeError(Exception):
    exit_code: int

class UsageError(SinkscopeError): ...
class InputError(SinkscopeError): ...
class ModelFileError(SinkscopeError): ...
class NumericalError(SinkscopeError): ...
class NotEnoughMemory(SinkscopeError): ...

class HookPoint:
    name: str

class _Model:
    path: str
    bos: str
    load_s: float
    @staticmethod
    def open(path: str, bos: str = "auto", force: bool = False) -> "_Model": ...
    def config_json(self) -> str: ...
    def sha256(self) -> str: ...
    def tokenize(self, text: str, bos: Optional[str] = None) -> Tuple[List[int], List[str], bool]: ...
    def decode(self, ids: Sequence[int]) -> List[Optional[str]]: ...
    def hook_sites(self) -> List[str]: ...
    def expand(self, names: Sequence[str]) -> List[str]: ...
    def forward(
        self,
        ids: Sequence[int],
        capture: Sequence[str],
        hooks: Sequence[Tuple[Sequence[str], Callable[..., Optional[np.ndarray]]]],
        edits: Sequence[str],
        logits: bool,
    ) -> Tuple[Optional[np.ndarray], Dict[str, np.ndarray]]: ...

class _Input:
    def __init__(
        self,
        *,
        prompts_file: Optional[str] = None,
        texts: Optional[Sequence[Tuple[str, str]]] = None,
        dataset: Optional[str] = None,
        limit: Optional[int] = None,
        max_tokens: Optional[int] = None,
        truncate: bool = False,
        bos: Optional[str] = None,
        first_token: Optional[str] = None,
        data_dir: str = "data/cache",
        python: str = "python3",
        force: bool = False,
        resume: bool = False,
    ) -> None: ...

def profile(
    model: _Model,
    input: _Input,
    out: str,
    *,
    epsilon: float = 0.3,
    workers: Optional[int] = None,
    pack_tokens: int = 128,
    report: bool = True,
    progress: Optional[Callable[[int, int, float], None]] = None,
) -> str: ...
def lens(
    model: _Model, input: _Input, out: str, *, report: bool = True, progress: Optional[Callable[[int, int, float], None]] = None
) -> str: ...
def probe(
    model: _Model,
    input: _Input,
    out: str,
    *,
    pool: str = "mean",
    folds: int = 5,
    seed: int = ...,
    c: float = ...,
    keep_features: bool = False,
    report: bool = True,
    progress: Optional[Callable[[int, int, float], None]] = None,
) -> str: ...
def ablate(
    model: _Model,
    input: _Input,
    out: str,
    *,
    layers: str = "auto",
    scales: Sequence[float] = ...,
    component: str = "mlp",
    one_by_one: bool = False,
    mean_ablate: bool = False,
    epsilon: float = 0.3,
    report: bool = True,
    progress: Optional[Callable[[int, int, float], None]] = None,
) -> str: ...
def render_run(dir: str) -> None: ...
def compare(runs: Sequence[str], out: str, force: bool = False) -> str: ...
