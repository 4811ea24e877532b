"""Library errors arrive as exception classes carrying the CLI's exit code (README, "Exit
codes"; RELIABILITY.md), with the CLI's message; Python exceptions in hooks pass through."""

import numpy as np
import pytest

import sinkscope
from conftest import FIXTURES

LLAMA = FIXTURES / "models" / "llama"


def test_exit_codes_are_the_clis():
    assert sinkscope.SinkscopeError.exit_code == 1
    assert sinkscope.UsageError.exit_code == 2
    assert sinkscope.InputError.exit_code == 3
    assert sinkscope.ModelFileError.exit_code == 4
    assert sinkscope.NumericalError.exit_code == 5
    assert sinkscope.NotEnoughMemory.exit_code == 6
    for cls in (sinkscope.UsageError, sinkscope.InputError, sinkscope.ModelFileError, sinkscope.NumericalError, sinkscope.NotEnoughMemory):
        assert issubclass(cls, sinkscope.SinkscopeError)


def test_bad_model_file_is_a_model_file_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(sinkscope.ModelFileError) as e:
        sinkscope.load(bad)
    assert e.value.exit_code == 4 and "broken.gguf" in str(e.value)


def test_unknown_hook_name_is_a_usage_error_with_suggestions():
    model = sinkscope.load(LLAMA)
    with pytest.raises(sinkscope.UsageError) as e:
        model.run_with_cache("Hello there", names_filter="blocks.0.hook_mlp_outt")
    assert e.value.exit_code == 2 and "blocks.0.hook_mlp_out" in str(e.value)
    with pytest.raises(sinkscope.UsageError):
        model.run_with_hooks("Hello there", [sinkscope.edit_hook("blocks.0.hook_mlp_out:pos=0:frobnicate")])


def test_prompt_too_long_and_missing_prompt_file_are_input_errors(tmp_path):
    model = sinkscope.load(LLAMA)
    long = " ".join(["word"] * (model.config["context_length"] + 10))
    with pytest.raises(sinkscope.InputError) as e:
        sinkscope.profile(model, [long], out=tmp_path / "a", progress=False)
    assert e.value.exit_code == 3 and "context length" in str(e.value)
    with pytest.raises(sinkscope.InputError) as e:
        sinkscope.profile(model, tmp_path / "missing.jsonl", out=tmp_path / "b", progress=False)
    assert "missing.jsonl" in str(e.value)
    # An output folder holding an earlier run is refused without force (exit 3), replaced with it.
    sinkscope.profile(model, ["The cat sat on the mat."], out=tmp_path / "c", progress=False, report=False)
    with pytest.raises(sinkscope.InputError):
        sinkscope.profile(model, ["The cat sat on the mat."], out=tmp_path / "c", progress=False, report=False)
    sinkscope.profile(model, ["The cat sat on the mat."], out=tmp_path / "c", progress=False, report=False, force=True)


def test_nan_from_a_hook_is_a_numerical_error():
    model = sinkscope.load(LLAMA)
    with pytest.raises(sinkscope.NumericalError) as e:
        model.run_with_hooks("Hello there", [("blocks.0.hook_mlp_out", lambda a, hook: np.full_like(a, np.nan))])
    assert e.value.exit_code == 5


def test_hook_exceptions_and_bad_shapes():
    model = sinkscope.load(LLAMA)

    class Boom(Exception):
        pass

    def boom(a, hook):
        raise Boom(hook.name)

    with pytest.raises(Boom, match="blocks.1.hook_resid_post"):
        model.run_with_hooks("Hello there", [("blocks.1.hook_resid_post", boom)])
    with pytest.raises(sinkscope.UsageError, match="shape"):
        model.run_with_hooks("Hello there", [("blocks.1.hook_resid_post", lambda a, hook: a[:1])])
    # The model is still usable afterwards.
    assert model("Hello there").shape[1] == model.config["d_vocab"]
