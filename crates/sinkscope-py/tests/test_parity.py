"""run_with_cache and run_with_hooks against the Hugging Face references of the fixture models
(tests/fixtures/models/*/reference.safetensors), with the Rust parity test's tolerances
(crates/sinkscope-model/tests/parity.rs): hidden states and per-head tensors
|a - b| <= 1e-5 + 1e-5 * max|ref|, attention patterns <= 1e-5, logits <= 1e-4 (float32
summation order; a convention error shows up as >~ 1e-3)."""

import re

import numpy as np
import pytest

import sinkscope
from conftest import FAMILIES, FIXTURES, read_safetensors


def tolerance(site, ref):
    if site.endswith("attn.hook_pattern"):
        return 1e-5
    if site == "logits":
        return 1e-4
    return 1e-5 + 1e-5 * float(np.max(np.abs(ref))) if ref.size else 1e-5


def our_site(hook, sites):
    """The fixtures' hook_q/hook_k hold the rotated tensors: our hook_rot_q/hook_rot_k where the
    model has RoPE (see parity.rs)."""
    m = re.fullmatch(r"(blocks\.\d+\.attn\.)hook_([qk])", hook)
    if m and f"{m.group(1)}hook_rot_{m.group(2)}" in sites:
        return f"{m.group(1)}hook_rot_{m.group(2)}"
    return hook


def stored_sites(reference, prompt, sites):
    out = []
    for key in reference:
        hook = key[len(prompt) + 1 :] if key.startswith(prompt + ".") else None
        if hook is None or hook == "tokens" or hook.startswith("ablate_"):
            continue
        site = our_site(hook, sites)
        if site in sites:
            out.append((site, key))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_equals_hf_reference_at_every_stored_site(family):
    d = FIXTURES / "models" / family
    reference = read_safetensors(d / "reference.safetensors")
    model = sinkscope.load(d)
    sites = set(model.hook_sites())
    prompts = sorted({k.split(".")[0] for k in reference if re.match(r"p\d+\.tokens$", k)})
    checked = 0
    for p in prompts:
        ids = reference[f"{p}.tokens"].reshape(-1).tolist()
        wanted = stored_sites(reference, p, sites)
        logits, cache = model.run_with_cache(ids, names_filter=[s for s, _ in wanted if s != "logits"])
        for site, key in wanted:
            got = logits if site == "logits" else cache[site]
            ref = reference[key].astype(np.float32)
            assert got.dtype == np.float32
            assert got.shape == ref.shape, f"{family} {key}: shape {got.shape} != {ref.shape}"
            diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
            assert diff <= tolerance(site, ref), f"{family} {key}: max |d| = {diff:e}"
            checked += 1
    assert checked > 20, f"{family}: only {checked} sites compared"


def zero_pos0(activation, hook):
    assert hook.name == "blocks.1.hook_mlp_out"
    activation[0, :] = 0.0
    return activation


def zero_pos0_in_place(activation, hook):
    activation[0] = 0.0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["return", "in_place", "edit_hook"])
def test_python_hook_reproduces_ablate_mlp_bos_l1(family, how):
    d = FIXTURES / "models" / family
    reference = read_safetensors(d / "reference.safetensors")
    keys = [k for k in reference if k.startswith("p0.ablate_mlp_bos_l1.")]
    if not keys:
        pytest.skip(f"{family}: no ablate_mlp_bos_l1 reference")
    model = sinkscope.load(d)
    hook = {
        "return": ("blocks.1.hook_mlp_out", zero_pos0),
        "in_place": (lambda name: name == "blocks.1.hook_mlp_out", zero_pos0_in_place),
        "edit_hook": sinkscope.edit_hook("blocks.1.hook_mlp_out:pos=0:zero"),
    }[how]
    ids = reference["p0.tokens"].reshape(-1).tolist()
    sites = [k[len("p0.ablate_mlp_bos_l1.") :] for k in keys]
    logits, cache = model.run_with_cache(ids, names_filter=[s for s in sites if s != "logits"], fwd_hooks=[hook])
    for site, key in zip(sites, keys):
        got = logits if site == "logits" else cache[site]
        ref = reference[key]
        diff = float(np.max(np.abs(got - ref)))
        assert diff <= tolerance(site, ref), f"{family} {key} ({how}): max |d| = {diff:e}"
    # The hook changed something: the unablated logits differ from the ablated ones.
    plain = model(ids)
    assert float(np.max(np.abs(plain - logits))) > 1e-3


def test_hooks_see_what_earlier_hooks_returned_and_run_in_order():
    model = sinkscope.load(FIXTURES / "models" / "llama")
    ids = model.tokenize("The cat sat on the mat.")
    seen = []

    def double(a, hook):
        seen.append(("double", hook.name))
        return a * 2

    def check(a, hook):
        seen.append(("check", hook.name))
        check.value = a.copy()

    _, cache = model.run_with_cache(ids, "blocks.0.hook_resid_post", fwd_hooks=[("blocks.0.hook_resid_post", double), ("blocks.0.hook_resid_post", check)])
    assert seen == [("double", "blocks.0.hook_resid_post"), ("check", "blocks.0.hook_resid_post")]
    np.testing.assert_array_equal(check.value, cache["blocks.0.hook_resid_post"])
    _, plain = model.run_with_cache(ids, "blocks.0.hook_resid_post")
    np.testing.assert_array_equal(cache["blocks.0.hook_resid_post"], plain["blocks.0.hook_resid_post"] * 2)


def test_cache_names_and_shapes_follow_run_safetensors():
    model = sinkscope.load(FIXTURES / "models" / "llama")
    c = model.config
    ids = model.tokenize("Hello world, this is a test.")
    t = len(ids)
    logits, cache = model.run_with_cache(ids, "hook_embed,blocks.*.hook_resid_post,blocks.0.attn.hook_pattern,blocks.0.attn.hook_z")
    assert logits.shape == (t, c["d_vocab"])
    assert cache["hook_embed"].shape == (t, c["d_model"])
    assert sorted(k for k in cache if k.endswith("hook_resid_post")) == sorted(f"blocks.{i}.hook_resid_post" for i in range(c["n_layers"]))
    assert cache["blocks.0.attn.hook_pattern"].shape == (c["n_heads"], t, t)
    assert cache["blocks.0.attn.hook_z"].shape == (t, c["n_heads"], c["d_head"])
    # The same pass from text and from ids.
    logits2, _ = model.run_with_cache("Hello world, this is a test.", [])
    np.testing.assert_array_equal(logits, logits2)
