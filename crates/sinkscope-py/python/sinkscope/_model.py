"""`sinkscope.load` and `Model`: forward passes with captures, edits and Python hooks."""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _sinkscope

#: A hook function: ``fn(activation, hook)`` with ``activation`` a float32 numpy array (no batch
#: dimension) and ``hook.name`` the site; it returns ``None`` (after editing the array in place,
#: or not at all) or a replacement array of the same shape.
HookFn = Callable[..., Optional[np.ndarray]]
#: A hook name, a ``blocks.*.`` pattern, a list of them, or a predicate on hook names.
NameFilter = Union[str, Sequence[str], Callable[[str], bool]]
#: A text, or token ids (used as they are: no BOS is added).
TextOrIds = Union[str, Sequence[int], np.ndarray]


class _Edit:
    """A ready-made hook from one CLI ``--edit`` spec (see ``EDIT_GRAMMAR``)."""

    def __init__(self, spec: str):
        self.spec = spec

    def __repr__(self) -> str:
        return f"edit_hook({self.spec!r})"


def edit_hook(spec: str) -> Tuple[str, _Edit]:
    """The CLI's ``--edit SPEC`` as an entry of ``fwd_hooks``, e.g.
    ``model.run_with_hooks(text, fwd_hooks=[sinkscope.edit_hook("blocks.1.hook_mlp_out:pos=0:zero")])``.
    The edit runs in Rust (no Python call per site) with exactly the CLI's arithmetic."""
    return (spec.split(":", 1)[0], _Edit(spec))


class Model:
    """A loaded model. Use :func:`load` to make one."""

    def __init__(self, inner: "_sinkscope._Model"):
        self._inner = inner
        self._config = json.loads(inner.config_json())
        self._sites = inner.hook_sites()

    def __repr__(self) -> str:
        c = self._config
        return (
            f"sinkscope.Model({str(self.path)!r}, family={c.get('family')!r}, "
            f"n_layers={c.get('n_layers')}, d_model={c.get('d_model')}, bos={self.bos!r})"
        )

    @property
    def config(self) -> Dict[str, object]:
        """The resolved ModelConfig (``family``, ``n_layers``, ``d_model``, ``n_heads``, ...), as a dict."""
        return self._config

    @property
    def path(self) -> str:
        """The checkpoint's path, as given to :func:`load`."""
        return str(self._inner.path)

    @property
    def bos(self) -> str:
        """The default BOS policy (``auto``, ``always``, ``never`` or ``eos``)."""
        return self._inner.bos

    @property
    def cfg(self) -> Dict[str, object]:
        """TransformerLens's name for :attr:`config`."""
        return self._config

    def sha256(self) -> str:
        """The model's content hash, as every manifest records it."""
        return self._inner.sha256()

    def hook_sites(self) -> List[str]:
        """Every hook name of this model, in dataflow order."""
        return list(self._sites)

    def tokenize(self, text: str, bos: Optional[str] = None) -> List[int]:
        """Token ids of ``text`` as a run sees them (``bos``: the policy, default the model's)."""
        return self._inner.tokenize(text, bos)[0]

    def to_str_tokens(self, text: str, bos: Optional[str] = None) -> List[str]:
        """Token strings of ``text`` (the vocabulary's spelling)."""
        return self._inner.tokenize(text, bos)[1]

    def _ids(self, input: TextOrIds, bos: Optional[str]) -> List[int]:
        if isinstance(input, str):
            return self._inner.tokenize(input, bos)[0]
        return [int(i) for i in np.asarray(input).reshape(-1)]

    def _names(self, names_filter: Optional[NameFilter]) -> List[str]:
        if names_filter is None:
            return list(self._sites)
        if callable(names_filter):
            return [s for s in self._sites if names_filter(s)]
        if isinstance(names_filter, str):
            names_filter = [n for n in names_filter.split(",") if n.strip()]
        return self._inner.expand(list(names_filter))

    def _split_hooks(self, fwd_hooks: Iterable[Tuple[NameFilter, object]]):
        hooks, edits = [], []
        for name, fn in fwd_hooks:
            if isinstance(fn, _Edit):
                edits.append(fn.spec)
            else:
                hooks.append((self._names(name), fn))
        return hooks, edits

    def run_with_cache(
        self,
        input: TextOrIds,
        names_filter: Optional[NameFilter] = None,
        *,
        fwd_hooks: Iterable[Tuple[NameFilter, object]] = (),
        bos: Optional[str] = None,
        return_logits: bool = True,
    ) -> Tuple[Optional[np.ndarray], Dict[str, np.ndarray]]:
        """One forward pass: ``(logits [T, d_vocab], cache)``, the cache mapping hook names to
        float32 arrays with the shapes of ``sinkscope run``'s safetensors (no batch dimension:
        ``[T, d_model]``, per-head ``[T, n_heads, d_head]``, patterns ``[n_heads, T, T]``).
        ``names_filter`` (default: every site) is a name, a ``blocks.*.`` pattern, a list, or a
        predicate; ``fwd_hooks`` run before the cache sees the activations."""
        hooks, edits = self._split_hooks(fwd_hooks)
        return self._inner.forward(self._ids(input, bos), self._names(names_filter), hooks, edits, return_logits)

    def run_with_hooks(
        self,
        input: TextOrIds,
        fwd_hooks: Iterable[Tuple[NameFilter, object]] = (),
        *,
        bos: Optional[str] = None,
        return_logits: bool = True,
    ) -> Optional[np.ndarray]:
        """One forward pass with hooks, returning the logits ``[T, d_vocab]``. Each entry of
        ``fwd_hooks`` is ``(name_or_filter, fn)``: ``fn(activation, hook)`` gets a float32
        array and a :class:`HookPoint` and returns ``None`` or a replacement (editing the array
        in place also works), as in TransformerLens; or ``sinkscope.edit_hook(SPEC)`` for a
        CLI ``--edit``. Hooks run in order; the GIL is released except inside them."""
        hooks, edits = self._split_hooks(fwd_hooks)
        return self._inner.forward(self._ids(input, bos), [], hooks, edits, return_logits)[0]

    def __call__(self, input: TextOrIds, bos: Optional[str] = None) -> np.ndarray:
        """The logits ``[T, d_vocab]`` of one forward pass."""
        return self.run_with_hooks(input, (), bos=bos)


def load(path: Union[str, os.PathLike], bos: str = "auto", force: bool = False) -> Model:
    """Opens a ``.gguf`` file or a Hugging Face folder (family detected) and loads it, after the
    memory guard's check (``force=True`` loads anyway). ``bos``: the default BOS policy of
    every call (``auto``: the model's own setting; ``always``, ``never``, ``eos``)."""
    return Model(_sinkscope._Model.open(os.fspath(path), bos, force))
