"""sinkscope from Python: the same Rust core as the ``sinkscope`` CLI.

Open a decoder-only LLM (GGUF file or Hugging Face folder), run it with TransformerLens-named
hooks, and measure the first token's massive activation, the compression valley and the
attention sinks layer by layer::

    import sinkscope
    model = sinkscope.load("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    logits, cache = model.run_with_cache("The cat sat on the mat.")
    cache["blocks.3.hook_resid_post"].shape          # (T, d_model), numpy float32
    run = sinkscope.profile(model, ["The cat sat on the mat.", "Two plus two is four."])
    run.layers[["layer", "bos_ratio_mean", "entropy_norm_mean"]]   # pandas

Errors are :class:`SinkscopeError` subclasses carrying the CLI's ``exit_code``.
"""

from ._sinkscope import (
    EDIT_GRAMMAR,
    HookPoint,
    InputError,
    ModelFileError,
    NotEnoughMemory,
    NumericalError,
    SinkscopeError,
    UsageError,
    __version__,
)
from ._model import Model, edit_hook, load
from ._run import Run, ablate, compare, lens, open_run, probe, profile

__all__ = [
    "EDIT_GRAMMAR",
    "HookPoint",
    "InputError",
    "Model",
    "ModelFileError",
    "NotEnoughMemory",
    "NumericalError",
    "Run",
    "SinkscopeError",
    "UsageError",
    "__version__",
    "ablate",
    "compare",
    "edit_hook",
    "lens",
    "load",
    "open_run",
    "probe",
    "profile",
]
