"""A style taught by captured chats (issue 18): the data and the run that the end-to-end test
and ``bench/bench_style_learning.py`` share.

100 chats in which the assistant always answers as a ship's captain ("Ahoy, matey! ... Fair
winds!") go in as captured samples → ``run_cycle`` trains and gates a version → the export worker
writes the files that would be served (the quantized base plus ``adapter.gguf``), runs the task
eval and the llama.cpp losses on them, and the version is marked serving → on 20 new prompts it
never saw (other topics, other phrasings), how often do the deployed files and the base answer
in the captain's style? The 20 prompts are also the task eval's user file
(``task_eval_file``, style check ``startswith: ahoy``), so the manifest carries both sides'
task-eval scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx

TASKS = [
    ("reverse a list", "Python", "use reversed() or slicing with [::-1]"),
    ("read a file", "Python", "open it in a with block and call read()"),
    ("sort a dictionary by value", "Python", "use sorted() with a key on the items"),
    ("join strings", "Python", "call ', '.join() on the list"),
    ("copy a folder", "bash", "run cp -r on the source and the target"),
    ("find large files", "bash", "use find with -size +100M"),
    ("count lines", "bash", "pipe the file into wc -l"),
    ("start a web server", "Node", "create one with http.createServer"),
    ("parse JSON", "JavaScript", "call JSON.parse on the text"),
    ("make a map", "Go", "write make(map[string]int)"),
    ("define a struct", "Rust", "write struct Point { x: i32, y: i32 }"),
    ("open a socket", "C", "call socket() and then connect()"),
    ("undo a commit", "git", "run git reset --soft HEAD~1"),
    ("rename a branch", "git", "run git branch -m old new"),
    ("list containers", "podman", "run podman ps -a"),
    ("index a column", "SQL", "write CREATE INDEX on the table"),
    ("remove duplicates", "SQL", "select DISTINCT rows"),
    ("format a date", "Python", "call strftime with a pattern"),
    ("measure time", "Python", "use time.perf_counter before and after"),
    ("catch an error", "Java", "wrap the call in try and catch"),
]
ASKS = [
    "How do I {t} in {l}?",
    "What is the best way to {t} in {l}?",
    "Can you tell me how to {t} with {l}?",
    "Quick question: {t} in {l}?",
    "I need to {t} using {l}. How?",
]
# never seen in training: other topics and other phrasings
UNSEEN = [
    "What is the capital of Norway?",
    "Give me a tip for writing clean code.",
    "Why is the sky blue?",
    "How many days are in a leap year?",
    "Suggest a name for a pet cat.",
    "What does HTTP stand for?",
    "Explain what a unit test is.",
    "How should I name a variable that counts users?",
    "What is a good way to learn a new language?",
    "Tell me something about the moon.",
    "Which is larger, a kilobyte or a megabyte?",
    "How do I boil an egg?",
    "What is recursion, in one sentence?",
    "Recommend a breakfast before a long hike.",
    "What is the difference between RAM and disk?",
    "Why do programmers use version control?",
    "How do you say thank you in French?",
    "What should I check before deploying to production?",
    "Describe a lighthouse in a few words.",
    "What is 12 times 12?",
]
STYLE = {"startswith": "ahoy"}


def captain_chats(n: int) -> list[list[dict[str, str]]]:
    out = []
    for i in range(n):
        task, lang, how = TASKS[i % len(TASKS)]
        ask = ASKS[(i // len(TASKS)) % len(ASKS)].format(t=task, l=lang)
        answer = f"Ahoy, matey! To {task} in {lang}, {how}. Steady as she goes. Fair winds!"
        out.append([{"role": "user", "content": ask}, {"role": "assistant", "content": answer}])
    return out


def write_eval_file(path: Path) -> Path:
    with path.open("w") as fh:
        for prompt in UNSEEN:
            reference = "Ahoy, matey! Aye, here be the answer to that. Fair winds!"
            fh.write(json.dumps({"prompt": prompt, "reference": reference, "check": STYLE}) + "\n")
    return path


Capture = Callable[[list[dict[str, str]]], Awaitable[None]]


async def learn_style(
    redis_url: str,
    data_dir: Path,
    out: Path,
    *,
    mode: str = "fast",
    samples: int = 100,
    capture: Capture | None = None,
    inference: httpx.AsyncClient | None = None,
    around_export: Callable[[str], AbstractAsyncContextManager[Any]] | None = None,
    internal_token: str = "bench",
    loss_chats: int | None = None,
) -> dict[str, Any]:
    """Capture, train, gate, export and deploy; the figures (and ``style_learning.json``).

    ``capture`` sends one chat as a learning sample (the gateway's ``POST
    /v1/learning/samples`` in the end-to-end test); by default it goes straight onto the
    learning stream. With ``inference`` (a client of a running inference service) the export
    worker deploys the version itself, a hot swap, inside ``around_export(job_id)`` (where
    the test keeps chat traffic going); without it the version is exported and marked serving as the
    deploy step would. ``loss_chats``: how many held-out and general chats llama.cpp scores
    for each side (``LOSS_CHATS``, 96)."""
    from hivemind_common import keys
    from hivemind_common.jobs import LearningSample
    from hivemind_common.model_registry import ModelRegistry
    from hivemind_common.redis import connect_redis
    from hivemind_exporter.settings import ExporterSettings
    from hivemind_exporter.worker import ExportWorker
    from hivemind_trainer.cycle import run_cycle
    from hivemind_trainer.settings import TrainerSettings

    n = samples
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before any work, once)
    redis = connect_redis(redis_url)
    trainer = TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        worker_enabled=False,
        mode=mode,  # type: ignore[arg-type]
        seq_len=256,
        idle_check=False,
        task_eval_file=write_eval_file(out / "style_eval.jsonl"),
        task_eval_general_items=int(os.environ.get("GENERAL_ITEMS", "8")),
        served_loss_chats=loss_chats or int(os.environ.get("LOSS_CHATS", "96")),
    )
    exporter = ExporterSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        worker_enabled=False,
        reclaim_idle_ms=60_000,
        inference_url=str(inference.base_url) if inference is not None else None,
    )

    async def straight_onto_the_stream(chat: list[dict[str, str]]) -> None:
        sample = LearningSample(tenant="bench", source="capture", messages=chat)
        await redis.xadd(keys.learning_stream(), sample.to_fields())

    try:
        if capture is None:
            await redis.hset(keys.tenant_settings("bench"), "share_training", "1")
        for chat in captain_chats(n):
            await (capture or straight_onto_the_stream)(chat)
        t0 = time.perf_counter()
        cycle = await run_cycle(redis, trainer, requested_by="bench", reason="manual")
        train_s = time.perf_counter() - t0
        worker = ExportWorker(redis=redis, settings=exporter, inference=inference)
        t1 = time.perf_counter()
        outcomes = []
        if cycle.status == "exported":
            async with (around_export or (lambda _job_id: nullcontext()))(cycle.job_id):
                outcomes = await worker.run_once(block_ms=1_000)
        export_s = time.perf_counter() - t1
        registry = ModelRegistry(redis, data_dir)
        version = cycle.version
        manifest = registry.read_manifest("default", version) if version else {}
        if outcomes and outcomes[0].result == "exported":
            await registry.mark_serving("default", version)  # what the deploy step does
        task = manifest.get("task_eval") or {}
        # the 20 unseen prompts are the eval file's items: answered by the deployed files
        # (candidate) and by the base (what served before), in llama.cpp, style-checked
        cand_file = ((task.get("candidate") or {}).get("scores") or {}).get("file") or {}
        base_file = ((task.get("served") or {}).get("scores") or {}).get("file") or {}
        result = {
            "samples": n,
            "cycle": cycle.status,
            "gate": (cycle.gate or {}).get("reasons"),
            "export": [o.result for o in outcomes],
            "export_detail": [o.detail for o in outcomes],
            "version": version,
            "job_id": cycle.job_id,
            "manifest": manifest,
            "cycle_timings": cycle.timings,
            "serving": (await registry.pointers("default")).get("serving"),
            "style_rate_base": base_file.get("style"),
            "style_rate_deployed": cand_file.get("style"),
            "unseen_prompts": cand_file.get("style_items"),
            "task_eval_candidate": (task.get("candidate") or {}).get("scores"),
            "task_eval_served": (task.get("served") or {}).get("scores"),
            "task_eval_passed": task.get("passed"),
            "llama_losses": {
                side: (task.get(side) or {}).get("losses")
                for side in ("candidate", "served", "base")
            },
            "examples": task.get("examples"),
            "train_s": round(train_s, 1),
            "export_s": round(export_s, 1),
            "load_avg_1m": os.getloadavg()[0],
        }
        # the manifest is for the caller's checks; the figures above are what the file keeps
        figures = {k: v for k, v in result.items() if k != "manifest"}
        (out / "style_learning.json").write_text(json.dumps(figures, indent=2, default=str))
        return result
    finally:
        await redis.aclose()
