"""The compiled copy's attention in AMX tiles: torch's numerics, used only where it can run."""

from __future__ import annotations

import platform
from typing import Any

import pytest

from hivemind_embedding import amx_attention as amx
from hivemind_embedding.fast_path import compiler_name, has_compiler


def _why_not() -> str | None:
    if not has_compiler():
        return f"no C++ compiler ({compiler_name()})"
    return amx.unavailable(compiler_name())


@pytest.mark.parametrize(
    ("dims", "positions"), [(32, 1), (32, 15), (32, 17), (32, 150), (32, 256), (64, 33), (128, 40)]
)
def test_the_kernel_matches_torchs_attention(dims: int, positions: int) -> None:
    """Against torch's attention in float32, the kernel is as close as torch's own bfloat16
    kernel, on every valid row of texts of any length (1 to a multiple of 16 and beyond);
    rows past a text's length are zeros."""
    why = _why_not()
    if why is not None:
        pytest.skip(f"no AMX attention on this machine: {why}")
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(positions * dims)
    texts, heads = 5, 4
    x = (torch.randn(texts, positions, 3, heads, dims, generator=gen) * 2).to(torch.bfloat16)
    q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))  # strided, as a layer makes them
    counts = torch.randint(1, positions + 1, (texts,), generator=gen)
    counts[0], counts[-1] = positions, 1
    valid = torch.arange(positions)[None, :] < counts[:, None]
    mask = valid[:, None, None, :]
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    torchs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).float()
    ours = amx.attention(q, k, v, counts, dims**-0.5).float().transpose(1, 2)
    inside = valid[:, None, :, None]
    ours_error = float(((ours - exact).abs() * inside).max())
    torchs_error = float(((torchs - exact).abs() * inside).max())
    assert ours_error <= 1.5 * torchs_error + 1e-3, (ours_error, torchs_error)
    assert float((ours * ~inside).abs().max()) == 0.0


def test_the_kernel_refuses_what_it_does_not_take() -> None:
    import torch

    q = torch.zeros(1, 2, 4, 48, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="32-128"):
        amx.attention(q, q, q, torch.tensor([4]), 0.1)
    with pytest.raises(ValueError, match="bfloat16"):
        amx.attention(q.float(), q.float(), q.float(), torch.tensor([4]), 0.1)


def test_the_attention_function_needs_the_lengths() -> None:
    """transformers makes no mask for an implementation it does not know: a call without each
    text's length (anywhere but the compiled copy's pass) is refused, never computed."""
    with pytest.raises(RuntimeError, match="compiled copy"):
        amx._attention_function(None, None, None, None, None, scaling=0.1)


def test_a_cpu_without_amx_keeps_torchs_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    from hivemind_embedding.encoder import default_model_dir

    monkeypatch.setattr(amx, "_lib", None)
    monkeypatch.setattr(amx, "_failure", None)
    monkeypatch.setattr(amx, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    fused, why = amx.prepared(model[0].auto_model, compiler_name())
    assert fused is None and why is not None
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert "amx_bf16" in why and "amx_tile" in why


def test_the_kernel_runs_on_a_copy_of_the_transformer() -> None:
    """The traced copy and the eager model share the original transformer: it keeps torch's
    attention, and only the compiled copy's copy names the kernel."""
    why = _why_not()
    if why is not None:
        pytest.skip(f"no AMX attention on this machine: {why}")
    from sentence_transformers import SentenceTransformer

    from hivemind_embedding.encoder import default_model_dir

    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    original = model[0].auto_model
    before = original.config._attn_implementation
    fused, why = amx.prepared(original, compiler_name())
    assert why is None and fused is not None and fused is not original
    assert fused.config._attn_implementation == amx.NAME
    assert original.config._attn_implementation == before != amx.NAME
    # the weights are shared, not copied
    assert all(a is b for a, b in zip(fused.parameters(), original.parameters(), strict=True))


@pytest.mark.parametrize(
    ("outcomes", "prepared_raises", "tried"),
    [
        (["on"], False, [("amx", True)]),
        (["failed", "on"], False, [("amx", True), ("sdpa", True)]),
        (["failed", "failed", "on"], False, [("amx", True), ("sdpa", True), ("sdpa", False)]),
        (["on"], True, [("sdpa", True)]),
    ],
)
def test_a_failed_compiled_copy_falls_back_step_by_step(
    monkeypatch: pytest.MonkeyPatch, outcomes: list[str], prepared_raises: bool, tried: list[Any]
) -> None:
    """The AMX copy first; should it fail, torch's attention; should that fail, without the C++
    wrapper. An error while preparing the AMX copy never leaves the state at "building"."""
    from types import SimpleNamespace

    from hivemind_embedding.fast_path import FastPath

    fast = FastPath(None, SimpleNamespace(pad_token_id=0), 16)
    calls: list[tuple[str, bool]] = []

    def compile_(
        transformer: Any, precision: str, *, attention: str = "sdpa", cpp_wrapper: bool = True
    ) -> None:
        calls.append((attention, cpp_wrapper))
        fast.compile_state = outcomes[len(calls) - 1]

    def prepared(transformer: Any, compiler: str) -> Any:
        if prepared_raises:
            raise MemoryError("no room for a copy")
        return object(), None

    monkeypatch.setattr(fast, "_compile", compile_)
    monkeypatch.setattr(amx, "prepared", prepared)
    fast.compile_state = "building"
    fast._compile_either([SimpleNamespace(auto_model=object())], "bfloat16", True)
    assert calls == tried and fast.compile_state == "on"
