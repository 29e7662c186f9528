"""The task eval and the losses measured in llama.cpp on the files that would be served, against
the served version (issue 18 point 1, issue 13 point 7): recorded in the manifest and in the
registry's metrics, and a candidate that answers worse is rejected, never deployed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from exporter.exporter_tiny import TinyModel, write_version

from hivemind_common import keys
from hivemind_common.job_records import create_job, get_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_exporter.served_eval import ChatModel, Files
from hivemind_exporter.settings import ExporterSettings
from hivemind_exporter.worker import ExportWorker

PROMPTS = [
    "What is the capital of France?",
    "Write a function that adds two numbers.",
    "Explain recursion briefly.",
    "How do I reverse a list in Python?",
]
CHATS = [
    [{"role": "user", "content": p}, {"role": "assistant", "content": f"An answer about {p}"}]
    for p in PROMPTS
]


def _base_answers(tiny: TinyModel) -> list[str]:
    model = ChatModel(Files("base", tiny.base_gguf), n_ctx=512, threads=2)
    try:
        return [model.answer([{"role": "user", "content": p}], 24) for p in PROMPTS]
    finally:
        model.close()


def _write_eval(directory: Path, references: list[str]) -> None:
    (directory / "eval").mkdir(parents=True, exist_ok=True)
    with (directory / "eval" / "task.jsonl").open("w") as fh:
        for i, (prompt, ref) in enumerate(zip(PROMPTS, references, strict=True)):
            item = {
                "id": f"h{i}",
                "kind": "heldout",
                "messages": [{"role": "user", "content": prompt}],
                "reference": ref,
            }
            fh.write(json.dumps(item) + "\n")
    (directory / "eval" / "losses.json").write_text(
        json.dumps({"heldout": CHATS[:2], "general": CHATS[2:], "general_set": "test"})
    )


def _settings(redis_url: str, data_dir: Path, **kw: Any) -> ExporterSettings:
    return ExporterSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token="t",
        worker_enabled=False,
        deploy=False,
        require_chat_stop=False,
        reclaim_idle_ms=0,
        threads=2,
        task_eval_max_tokens=24,
        **kw,
    )


async def _export(redis_client, settings: ExporterSettings, version: str) -> Any:
    await create_job(redis_client, f"job-{version}", model="default")
    job = ExportJob(job_id=f"job-{version}", model="default", version=version)
    await redis_client.xadd(keys.export_stream(), job.to_fields())
    worker = ExportWorker(redis=redis_client, settings=settings, inference=None)
    return (await worker.run_once(block_ms=50))[0]


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_a_candidate_that_answers_worse_than_the_served_model_is_rejected(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    # the references are what the base itself answers: nothing can beat it, the candidate
    # (the base plus a random adapter) answers otherwise and scores lower
    answers = _base_answers(tiny)
    assert all(any(ch.isalnum() for ch in a) for a in answers), answers
    reg = ModelRegistry(redis_client, data_dir)
    directory = write_version(reg, tiny, "v1")
    _write_eval(directory, answers)
    await reg.register(ModelVersion(name="default", version="v1", metrics={"heldout_loss": 1.0}))

    outcome = await _export(redis_client, _settings(redis_url, data_dir), "v1")

    assert outcome.result == "rejected", outcome
    report = reg.read_manifest("default", "v1")["task_eval"]
    assert report["passed"] is False and report["served_version"] == "base"
    assert report["served"]["scores"]["task"]["f1"] == 1.0
    assert report["candidate"]["scores"]["task"]["f1"] < 1.0
    serve = reg.read_manifest("default", "v1")["serve"]  # what inference would load
    assert report["candidate"]["files"]["gguf"] == Path(serve["gguf"]).name
    assert report["served"]["files"] == {"gguf": tiny.base_gguf.name, "lora": None}
    # the losses in llama.cpp on the served files: finite, and the adapter moves them
    for side in ("candidate", "served", "base"):
        for part in ("heldout", "general"):
            assert math.isfinite(report[side]["losses"][part])
    assert report["candidate"]["losses"]["general"] != report["base"]["losses"]["general"]
    mv = await reg.get("default", "v1")
    assert mv.status == "rejected" and "task f1" in (mv.error or "")
    assert mv.metrics["heldout_loss"] == 1.0  # the trainer's figures stay beside the new ones
    assert mv.metrics["served_task_f1"] == 1.0 and mv.metrics["task_eval_passed"] is False
    assert mv.metrics["llama_general_loss"] == report["candidate"]["losses"]["general"]
    job = await get_job(redis_client, "job-v1")
    assert job.status == "rejected" and "task eval" in (job.error or "")


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_a_candidate_no_worse_passes_with_both_scores_in_manifest_and_metrics(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    directory = write_version(reg, tiny, "v1")
    _write_eval(directory, ["zebra quartz"] * len(PROMPTS))  # neither side says these words
    await reg.register(ModelVersion(name="default", version="v1"))

    outcome = await _export(redis_client, _settings(redis_url, data_dir), "v1")

    assert outcome.result == "exported", outcome
    manifest = reg.read_manifest("default", "v1")
    report = manifest["task_eval"]
    assert report["passed"] is True
    assert report["candidate"]["scores"]["task"]["items"] == len(PROMPTS)
    assert len(report["examples"]) == len(PROMPTS)
    assert "task_eval" in manifest["export"]["timings_s"]
    mv = await reg.get("default", "v1")
    assert mv.status == "ready" and mv.metrics["task_eval_passed"] is True
    assert {"task_f1", "served_task_f1", "llama_heldout_loss", "llama_base_general_loss"} <= set(
        mv.metrics
    )


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_an_adapter_that_changes_nothing_in_llama_cpp_is_refused_by_the_control(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    from safetensors.torch import load_file, save_file

    reg = ModelRegistry(redis_client, data_dir)
    directory = write_version(reg, tiny, "v1")
    weights = directory / "adapter" / "adapter_model.safetensors"
    state = load_file(str(weights))
    save_file({k: v * 0 if "lora_B" in k else v for k, v in state.items()}, str(weights))
    _write_eval(directory, ["zebra quartz"] * len(PROMPTS))  # a tie on the task eval
    await reg.register(ModelVersion(name="default", version="v1"))

    outcome = await _export(redis_client, _settings(redis_url, data_dir, serve="adapter"), "v1")

    assert outcome.result == "rejected", outcome
    report = reg.read_manifest("default", "v1")["task_eval"]
    assert any(r.startswith("control:") for r in report["reasons"])
    assert report["candidate"]["losses"] == report["base"]["losses"]


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_answer_losses_from_answer_positions_only_equal_those_from_every_position(
    tiny: TinyModel,
) -> None:
    # the loss chats ask llama.cpp for logits at the answer positions only; the figures must be
    # those of a model that computes every position's logits (logits_all), also for a chat that
    # spans several batches, and a generation in between must not reuse a loss chat's cache

    long_chat = [
        {"role": "user", "content": "Summarise this: " + "the quick brown fox " * 40},
        {"role": "assistant", "content": "A fox, quickly, " * 20},
    ]
    chats = [*CHATS, long_chat]
    model = ChatModel(Files("base", tiny.base_gguf), n_ctx=512, threads=2)
    model._batch.close()  # batches of 64 tokens, so the long chat spans several
    from hivemind_exporter.served_eval import _Batch

    model._batch = _Batch(64)
    reference = _reference_model(tiny)
    try:
        ask = [{"role": "user", "content": PROMPTS[0]}]
        answer = model.answer(ask, 8)
        first = [model.answer_loss(c) for c in chats]
        # a generation after the loss chats must not reuse their cache, nor they its own
        assert model.answer(ask, 8) == answer
        again = [model.answer_loss(c) for c in chats]
        assert again == first
        assert len(model.tokens(model.prompt(long_chat))) > 128
        _assert_reference_losses(reference, model, chats, first)
    finally:
        model.close()
        reference.close()


def _reference_model(tiny: TinyModel) -> Any:
    """The tiny base in llama.cpp with every position's logits (``logits_all``)."""
    import llama_cpp

    from hivemind_common.llama_buffers import configure_llama

    configure_llama()

    return llama_cpp.Llama(
        model_path=str(tiny.base_gguf), n_ctx=512, n_batch=512, logits_all=True,
        n_threads=2, seed=0, verbose=False,
    )  # fmt: skip


def _assert_reference_losses(
    reference: Any, model: ChatModel, chats: list[Any], got: list[tuple[float, int]]
) -> None:
    """Each chat's answer loss and token count are the reference model's."""
    for chat, (nll, count) in zip(chats, got, strict=True):
        expected, tokens = _reference_loss(reference, model, chat)
        assert count == tokens > 0
        assert nll == pytest.approx(expected, rel=1e-5)


def _reference_loss(
    reference: Any, model: ChatModel, chat: list[dict[str, str]]
) -> tuple[float, int]:
    """The answer's summed loss from a model that computes every position's logits."""
    import numpy as np

    head = model.tokens(model.prompt(chat[:-1]))
    ids = model.tokens(model.prompt(chat[:-1]) + chat[-1]["content"] + model.eos_text)
    reference.reset()
    reference.eval(ids)
    rows = np.asarray(reference.scores[: len(ids)], dtype=np.float64)[len(head) - 1 : -1]
    targets = np.asarray(ids[len(head) :])
    top = rows.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(rows - top).sum(axis=-1)) + top[:, 0]
    return float((log_z - rows[np.arange(len(targets)), targets]).sum()), len(targets)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_loss_chats_that_begin_alike_decode_only_from_where_they_differ(
    tiny: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a loss chat keeps what the previous one left in llama.cpp's cache up to where they
    # differ (and up to its own first answer token): fewer tokens decoded, the same losses
    import llama_cpp

    system = {"role": "system", "content": "You answer briefly and cite the manual. " * 4}
    question = {"role": "user", "content": PROMPTS[0]}
    chats = [
        [system, question, {"role": "assistant", "content": "Paris."}],
        [system, question, {"role": "assistant", "content": "It is Paris, on the Seine."}],
        [system, question, {"role": "assistant", "content": "It is Paris, on the Seine."}],
        [system, {"role": "user", "content": PROMPTS[1]}, {"role": "assistant", "content": "def"}],
        [question, {"role": "assistant", "content": "Paris."}],  # no system turn
    ]
    decoded: list[int] = []
    real = llama_cpp.llama_decode

    def counting(ctx: Any, batch: Any) -> int:
        decoded.append(int(batch.n_tokens))
        return int(real(ctx, batch))

    model = ChatModel(Files("base", tiny.base_gguf), n_ctx=512, threads=2)
    reference = _reference_model(tiny)
    try:
        monkeypatch.setattr(llama_cpp, "llama_decode", counting)
        got = [model.answer_loss(c) for c in chats]
        monkeypatch.setattr(llama_cpp, "llama_decode", real)
        full = [
            len(model.tokens(model.prompt(c[:-1]) + c[-1]["content"] + model.eos_text))
            for c in chats
        ]
        assert len(decoded) == len(chats)
        assert decoded[0] == full[0]
        assert all(d < f for d, f in zip(decoded[1:4], full[1:4], strict=True)), (decoded, full)
        # the same chat again decodes from the prompt's last token (whose logits predict the
        # answer's first), not from nothing
        assert decoded[2] == got[2][1] + 1
        assert got[2] == got[1]
        _assert_reference_losses(reference, model, chats, got)
    finally:
        model.close()
        reference.close()


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_general_set_results_are_kept_per_files_and_heldout_items_always_run(
    tiny: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind_exporter import served_eval

    items = [
        {"id": f"{kind}{i}", "kind": kind, "messages": [{"role": "user", "content": p}],
         "reference": f"a {kind} answer"}
        for i, p in enumerate(PROMPTS) for kind in ("heldout", "general")
    ]  # fmt: skip
    losses = {"heldout": CHATS[:2], "general": CHATS[2:]}
    loads: list[Path] = []
    real = served_eval.ChatModel

    def counting(files: Files, **kw: Any) -> ChatModel:
        loads.append(files.gguf)
        return real(files, **kw)

    monkeypatch.setattr(served_eval, "ChatModel", counting)
    cache = tmp_path / "eval-cache"
    files = Files("base", tiny.base_gguf, cache=cache, keep=True)
    run = dict(n_ctx=512, threads=2, max_tokens=16)
    first = served_eval.measure(files, items, losses, **run)
    assert len(loads) == 1 and len(list(cache.glob("llama-*.json"))) == 1
    # only the general set is kept: held-out items and chats come from tenants' data
    kept = json.loads(next(cache.glob("llama-*.json")).read_text())
    assert len(kept["answers"]) == len(PROMPTS) and len(kept["losses"]) == len(CHATS[2:])
    digest = served_eval._digest
    for it in items:
        known = digest([it["messages"], it["reference"], run["max_tokens"]]) in kept["answers"]
        assert known == (it["kind"] == "general"), it["id"]
    assert {digest(c) for c in CHATS[2:]} == set(kept["losses"])
    again = served_eval.measure(files, items, losses, **run)
    assert again["answers"] == first["answers"] and again["losses"] == first["losses"]
    assert len(loads) == 2  # the held-out items and chats are run again
    # only the general set's figures are kept: with nothing held out, nothing is loaded
    general_only = [it for it in items if it["kind"] == "general"]
    alone = served_eval.measure(files, general_only, {"general": CHATS[2:]}, **run)
    assert len(loads) == 2
    assert alone["answers"] == [
        a for a, it in zip(first["answers"], items, strict=True) if it["kind"] == "general"
    ]
    assert alone["losses"]["general"] == first["losses"]["general"]
    # a configuration that may only read (a served version's) writes nothing
    other = tmp_path / "read-only"
    served_eval.measure(Files("served", tiny.base_gguf, cache=other), general_only, {}, **run)
    assert not other.exists()
    # other files are another configuration: measured, kept under another name
    copy = tmp_path / "other.gguf"
    copy.write_bytes(tiny.base_gguf.read_bytes() + b"\0")
    served_eval.measure(Files("x", copy, cache=cache, keep=True), general_only, {}, **run)
    assert len(loads) == 4 and len(list(cache.glob("llama-*.json"))) == 2
    # a broken file is ignored and measured again
    for kept in cache.glob("llama-*.json"):
        kept.write_text("{broken")
    served_eval.measure(files, general_only, {"general": CHATS[2:]}, **run)
    assert len(loads) == 5


def test_beside_a_served_version_the_base_is_the_anchor_of_the_task_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # versions each a little below the last (within the tolerance) cannot drift down: the
    # candidate must also be no worse than the base on the same items
    from hivemind_exporter import served_eval

    version = tmp_path / "v3"
    (version / "eval").mkdir(parents=True)
    item = {"id": "h0", "kind": "heldout", "messages": [{"role": "user", "content": "hi"}],
            "reference": "hello"}  # fmt: skip
    (version / "eval" / "task.jsonl").write_text(json.dumps(item) + "\n")
    f1 = {"candidate": 0.35, "served": 0.355, "base": 0.40}
    measured: list[str] = []

    def fake(files: Files, items: list[Any], losses: Any, **kw: Any) -> dict[str, Any]:
        measured.append(files.label)
        task = {"items": len(items), "f1": f1[files.label], "exact": 0.0, "style": None}
        return {"scores": {"task": task}, "losses": {"heldout": 1.0 + len(measured)},
                "answers": ["x"] * len(items), "files": {}}  # fmt: skip

    monkeypatch.setattr(served_eval, "measure", fake)
    sides = [Files(label, tmp_path / f"{label}.gguf") for label in ("candidate", "served", "base")]
    report = served_eval.served_eval(version, *sides)
    assert report is not None and measured == ["candidate", "served", "base"]
    assert report["passed"] is False
    assert "task f1 0.3500 vs served 0.3550: ok" in report["reasons"]
    assert "task f1 0.3500 worse than base 0.4000" in report["reasons"]
    f1["base"] = 0.355  # within the tolerance of the base too: it passes
    assert served_eval.served_eval(version, *sides)["passed"] is True  # type: ignore[index]
    # with nothing served yet the base is the served side: one comparison
    alone = served_eval.served_eval(version, sides[0], Files("served", sides[2].gguf), sides[2])
    assert alone is not None and not any("vs base" in r for r in alone["reasons"])
