"""The embedding service's compiled copy: built after start, the same vectors, safe fallbacks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from hivemind_embedding.fast_path import compiler_name, has_compiler
from support.embedding import running_embedding, shared_embedding_url

# TorchInductor builds C++ kernels: make install's machines have g++ (llama-cpp-python is
# compiled there too); the service images have none, and serve from the traced copy
pytestmark = pytest.mark.skipif(
    not has_compiler(), reason=f"no C++ compiler ({compiler_name()}) for the compiled copy"
)
# a compile takes ~30 s of one core on a quiet machine; the suite's machine is shared and slow
COMPILE_DEADLINE_S = 600
TEXTS = [
    "redis listens on port 6379",
    "x",
    "naïve café 日本語 " * 90,  # longer than the model's 256 pieces: truncated
    *(f"turn {i}: " + "word " * (2 + 11 * (i % 5)) for i in range(20)),
]


def _built(state: Any) -> str:
    """The compile's outcome (on, failed, off) once it is no longer building."""
    deadline = time.monotonic() + COMPILE_DEADLINE_S
    while (now := state()) == "building":
        assert time.monotonic() < deadline, f"still compiling after {COMPILE_DEADLINE_S} s"
        time.sleep(0.5)
    return str(now)


@pytest.fixture(scope="module")
def compiled_encoder() -> Iterator[Any]:
    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    # one pass at a time, so the tests below see the passes in order
    # (test_compiled_passes_run_side_by_side turns on two workers)
    enc = SentenceEncoder.load(
        default_model_dir(), model_id="m", threads=1, workers=1, compile_copy=True
    )
    assert enc._fast.compiling is not None
    enc._fast.compiling.join(COMPILE_DEADLINE_S)
    assert enc.compile_state == "on" and enc.compiled
    yield enc


def test_the_service_switches_to_its_compiled_copy_with_the_same_vectors(
    internal_token: str,
) -> None:
    headers = {"Authorization": f"Bearer {internal_token}"}
    traced_url = shared_embedding_url(internal_token)  # the suite's service: compile off
    with httpx.Client(base_url=traced_url, headers=headers, timeout=120) as c:
        assert c.get("/info").json()["compile"] == "off"
        traced = np.array(c.post("/embed", json={"texts": TEXTS}).json()["embeddings"])
    with (
        running_embedding(internal_token, embedding_compile=True) as url,
        httpx.Client(base_url=url, headers=headers, timeout=120) as c,
    ):
        # the traced copy answers while the compiled one is built
        early = c.post("/embed", json={"texts": TEXTS[:3]})
        assert early.status_code == 200, early.text
        assert _built(lambda: c.get("/info").json()["compile"]) == "on"
        info = c.get("/info").json()
        assert info["compiled"] is True
        assert info["attention"] in ("sdpa", "amx")
        compiled = np.array(c.post("/embed", json={"texts": TEXTS}).json()["embeddings"])
        one = np.array(c.post("/embed", json={"texts": TEXTS[:1]}).json()["embeddings"])
    assert compiled.shape == traced.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(compiled, axis=1), 1.0, atol=1e-4)
    assert np.sum(compiled * traced, axis=1).min() > 0.9995
    assert float(one[0] @ traced[0]) > 0.9995


def test_a_pass_of_two_or_more_runs_compiled_and_a_single_text_runs_traced(
    compiled_encoder: Any,
) -> None:
    fast = compiled_encoder._fast
    used: list[tuple[str, int]] = []
    real = fast._forward

    def spy(module: Any, pieces: list[list[int]]) -> np.ndarray:
        used.append(("traced" if module is fast._module else "compiled", len(pieces)))
        return real(module, pieces)

    fast._forward = spy
    try:
        rows = compiled_encoder.encode(TEXTS)  # passes of 16 and 7
        alone = compiled_encoder.encode(TEXTS[:1])
        odd = compiled_encoder.encode(TEXTS[:17])  # 16 + 1: the last pass is one text
    finally:
        del fast._forward
    assert used == [
        ("compiled", 16), ("compiled", 7), ("traced", 1), ("compiled", 16), ("traced", 1),
    ]  # fmt: skip
    assert float(alone[0] @ rows[0]) > 0.9995
    assert np.sum(odd * rows[:17], axis=1).min() > 0.9995


def _stance() -> str:
    import torch._dynamo.eval_frame as frames

    return str(frames._stance.stance)


def test_compiled_passes_run_side_by_side(compiled_encoder: Any) -> None:
    """Two passes in the compiled copy at once: the same rows as one at a time, and the
    process's recompile stance (one setting for every thread) restored once both are out."""
    import threading

    fast = compiled_encoder._fast
    texts = (TEXTS * 3)[:64]  # four passes of 16: two pairs
    one_at_a_time = compiled_encoder.encode(texts)
    meet = threading.Barrier(2, timeout=120)
    inside: list[str] = []
    real = fast._forward

    def spy(module: Any, pieces: list[list[int]]) -> np.ndarray:
        if module is not fast._module:  # a compiled pass: wait for the other one
            meet.wait()
            inside.append(_stance())
        return real(module, pieces)

    kept = fast._compiled
    fast.workers, fast._forward = 2, spy
    try:
        side_by_side = compiled_encoder.encode(texts)
        assert fast.compile_state == "on"  # no pass failed (a broken barrier would)
    finally:
        fast.workers = 1
        del fast._forward
        fast.close()
        fast._compiled, fast.compile_state = kept, "on"  # for the module's other tests
    assert len(inside) == 4 and set(inside) == {"fail_on_recompile"}
    assert np.sum(side_by_side * one_at_a_time, axis=1).min() > 0.9999
    assert _stance() == "default"


def test_the_recompile_stance_outlasts_every_pass_inside_it() -> None:
    """Passes leave in any order: the stance is the default again only after the last one
    (two plain ``set_stance`` scopes left out of order would restore each other's)."""
    from hivemind_embedding.fast_path import _refusing_recompiles

    first, second = _refusing_recompiles(), _refusing_recompiles()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert _stance() == "fail_on_recompile"
    second.__exit__(None, None, None)
    assert _stance() == "default"


def test_a_shape_the_compiled_copy_lacks_goes_to_the_traced_copy(compiled_encoder: Any) -> None:
    fast = compiled_encoder._fast
    # one text is a shape the graph was not built for (a size of 1 is specialised): a real
    # dynamo guard miss, refused under the fail_on_recompile stance instead of recompiled
    assert fast._try_compiled(fast._pieces(TEXTS[:1])) is None
    assert fast.compiled and fast.compile_state == "on"  # a missing shape keeps the copy
    assert fast._try_compiled(fast._pieces(TEXTS[:3])) is not None
    expected = fast._run(fast._module, TEXTS[:4])
    kept, attention = fast._compiled, fast.attention

    def broken(*_args: Any) -> Any:
        raise RuntimeError("boom")

    try:
        fast._compiled = broken
        got = fast._pass(fast._pieces(TEXTS[:4]))
        assert fast._compiled is None and fast.compile_state == "failed"  # traced from now on
        assert fast.attention == "sdpa"  # /info no longer names the compiled copy's kernel
        assert np.sum(got * expected, axis=1).min() > 0.9999
    finally:
        fast._compiled, fast.compile_state, fast.attention = kept, "on", attention


def test_no_compiler_or_a_failed_compile_leaves_the_traced_copy(
    compiled_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind_embedding.fast_path import FastPath

    fast = compiled_encoder._fast
    model = compiled_encoder._model
    copy = FastPath(fast._module, fast._tokenizer, 256)
    copy._probe_ref = fast._probe_ref
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert copy.compile_later(model) is None and not copy.compiled
    assert copy.compile_state == "off"
    monkeypatch.delenv("CXX")

    import torch

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("inductor cannot build here")

    monkeypatch.setattr(torch, "compile", refuse)
    thread = copy.compile_later(model)
    assert thread is not None
    thread.join(COMPILE_DEADLINE_S)
    assert not thread.is_alive() and not copy.compiled and copy.compile_state == "failed"
    assert copy.encode(TEXTS[:3]).shape == (3, 384)


def test_batches_run_the_amx_attention_where_the_cpu_has_it(compiled_encoder: Any) -> None:
    """On a CPU with AMX the compiled copy's attention is the kernel (torch's elsewhere), and
    its rows are the float32 model's either way."""
    from hivemind_embedding import amx_attention

    usable = amx_attention.unavailable(compiler_name()) is None
    if compiled_encoder.precision == "bfloat16" and usable:
        assert compiled_encoder.attention == "amx"
    else:
        assert compiled_encoder.attention == "sdpa"
    want = compiled_encoder._model.encode(TEXTS, normalize_embeddings=True)
    assert np.sum(compiled_encoder.encode(TEXTS) * want, axis=1).min() > 0.9995
