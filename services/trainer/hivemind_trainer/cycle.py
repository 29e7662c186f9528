"""One learning cycle, in process: collect → freeze data → train → evaluate → register → export job.

``run_cycle(redis, settings)`` is what the worker, ``hivemind learn train-now`` and the end-to-end
test call. The blocking part (torch) runs in a thread; the job record follows every stage. The
version directory gets the PEFT adapter (``adapter/``) and ``manifest.json``; a deployable version
is registered ``ready`` and handed to the exporter, a gate failure is kept, marked ``rejected``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from hivemind_common import keys
from hivemind_common.base_cache import tokenizer_fingerprint, tokenizer_mismatch
from hivemind_common.errors import Conflict, HivemindError, NotFound, Unprocessable
from hivemind_common.job_records import create_job, update_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_deploy import cleanup_versions
from hivemind_common.model_registry import ModelRegistry, ModelVersion, new_version_id
from hivemind_trainer.data.collector import Collector
from hivemind_trainer.data.consent import consenting
from hivemind_trainer.data.dataset import Dataset, is_imported
from hivemind_trainer.data.general_set import GeneralItem
from hivemind_trainer.data.sample_filter import SampleFilter
from hivemind_trainer.eval import base_scores
from hivemind_trainer.eval.task_set import task_items, write_eval_set
from hivemind_trainer.gate import (
    GateResult,
    decide,
    general_eval_items,
    general_eval_set,
    general_set_id,
)
from hivemind_trainer.metrics import CYCLES
from hivemind_trainer.orchestrator import LeaderLock, LeadershipLost
from hivemind_trainer.preference.data import PreferenceData, PreferenceStore, load_preference_data
from hivemind_trainer.preference.stage import choose_stage, preference_accuracy, run_stage
from hivemind_trainer.recipe.config import RecipeConfig
from hivemind_trainer.recipe.lora_recipe import LoraRecipe, Progress
from hivemind_trainer.recipe.model_io import default_gguf, ensure_base_hf
from hivemind_trainer.settings import TrainerSettings

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
EVAL_CACHE = "eval-cache"  # a model's general scores, beside its weights (eval/base_scores.py)


@dataclass
class CycleResult:
    job_id: str
    status: str  # exported (handed to the exporter) | rejected | failed | skipped
    version: str | None = None
    dataset_version: str | None = None
    gate: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_collector(redis: Any, settings: TrainerSettings, consumer: str) -> Collector:
    """The collector the worker and the cycle share (filter limits from settings)."""
    return Collector(
        redis,
        Dataset(settings.datasets_dir, heldout_fraction=settings.heldout_fraction),
        SampleFilter(
            min_tokens=settings.min_tokens,
            max_tokens=settings.max_tokens,
            min_rating=settings.min_rating,
        ),
        consumer=consumer,
        reclaim_idle_ms=settings.reclaim_idle_ms,
        preferences=PreferenceStore(settings.datasets_dir),
    )


def recipe_config(settings: TrainerSettings, overrides: dict[str, str] | None) -> RecipeConfig:
    cfg = RecipeConfig.from_mode(
        settings.mode,
        seq_len=settings.seq_len,
        max_steps=settings.max_steps,
        threads=settings.threads,
        checkpoint_every=settings.checkpoint_every,
        seed=settings.seed,
    )
    return cfg.with_overrides(overrides or {})


def _chats(records: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    return [r["messages"] for r in records]


def is_peft_model(model: Any) -> bool:
    """Whether the recipe trains an adapter (the preference stage continues it)."""
    return isinstance(model, PeftModel)


def _scores(
    recipe: LoraRecipe,
    heldout: list[list[dict[str, str]]],
    general: list[GeneralItem],
    *,
    base: bool = False,
    general_scores: dict[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """What the gate reads of one model (the base with ``base``): the held-out loss, the
    general answers' loss and accuracy (overall and ``general_accuracy:<kind>``), and the
    general replies' whole loss (reported). ``general_scores``: the general set's figures
    measured before (the base's, from its cache)."""
    scores = general_scores or _general_scores(recipe, general, base=base)
    held = recipe.evaluate_base(heldout) if base else recipe.evaluate(heldout)
    out = {
        "heldout": held,
        "general": scores["answers"][0],
        "general_accuracy": scores["answers"][1],
        "general_turns": scores["replies"][0],
    }
    for name, (_loss, accuracy) in scores.items():
        if name.startswith("kind:"):
            out[f"general_accuracy:{name[5:]}"] = accuracy
    return out


def _general_scores(
    recipe: LoraRecipe, general: list[GeneralItem], *, base: bool = False
) -> dict[str, tuple[float, float]]:
    chats, answers = [i.chat for i in general], [i.answer for i in general]
    kinds = [i.kind for i in general]
    measure = recipe.answer_scores_base if base else recipe.answer_scores
    return measure(chats, answers, kinds)


def _general_key(recipe: LoraRecipe, general: list[GeneralItem], base: str) -> str:
    """What a model's general scores depend on besides its own weights (``base``: the
    base's identity)."""
    hw = recipe.hardware
    assert hw is not None
    return base_scores.cache_key(
        general,
        base=base,
        end_token=recipe.config.end_token,
        seq_len=recipe.config.seq_len,
        batch_size=recipe.batch_size,
        dtype=hw.dtype,
        device=hw.device,
        method=recipe.config.method,
        qlora=hw.qlora,
    )


def _known_general_scores(
    recipe: LoraRecipe,
    general: list[GeneralItem],
    cache_dir: Path | None,
    *,
    base: bool,
    key: str | None,
    keep: bool = True,
) -> tuple[dict[str, tuple[float, float]], bool]:
    """A model's general scores (the base's with ``base``, else the model as loaded), from
    ``cache_dir`` when measured there before under ``key``, and whether they were; measured
    ones are kept there when ``keep``. No key (a base without an identity): measured."""
    if key is None:
        return _general_scores(recipe, general, base=base), False
    cached = base_scores.load(cache_dir, key)
    if cached is not None:
        return cached, True
    scores = _general_scores(recipe, general, base=base)
    if keep:
        base_scores.store(cache_dir, key, scores)
    return scores, False


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class TrainingOutOfMemory(HivemindError):
    """Training ran out of memory at ``batch_size`` (the cycle retries once at half of it)."""

    status = 507
    code = "out_of_memory"

    def __init__(self, batch_size: int) -> None:
        super().__init__(
            f"training ran out of memory at batch size {batch_size}; "
            "lower batch_size or seq_len (hivemind learn train-now --set batch_size=N)"
        )
        self.batch_size = batch_size


@dataclass
class _Trained:
    gate: GateResult
    train: dict[str, Any]
    hardware: dict[str, Any]


def train_and_gate(
    *,
    cfg: RecipeConfig,
    base_dir: Path,
    adapter_dir: Path | None,
    train: list[list[dict[str, str]]],
    heldout: list[list[dict[str, str]]],
    out_dir: Path,
    checkpoint_dir: Path | None,
    settings: TrainerSettings,
    progress: Progress | None = None,
    best_general: float | None = None,
    preference: PreferenceData | None = None,
    base_scores_dir: Path | None = None,
    base_identity: str | None = None,
) -> _Trained:
    """The blocking part: measure the base and the served model, train (SFT, then the
    preference stage when there is enough preference data), measure again, save."""
    recipe = LoraRecipe(cfg, base_dir, adapter_dir=adapter_dir, progress=progress)
    objective = settings.learning_objective
    try:
        recipe.setup()
        assert recipe.hardware is not None
        prepared = recipe.prepare(train)
        general = general_eval_items()
        # the base's general figures never change for the same base measured the same way
        # no identity (the user's own HF directory, which can change in place): nothing cached
        key = None if base_identity is None else _general_key(recipe, general, base_identity)
        known, was_cached = _known_general_scores(
            recipe, general, base_scores_dir, base=True, key=key
        )
        base = _scores(recipe, heldout, general, base=True, general_scores=known)
        # with nothing served yet the model is the base with a fresh adapter (a no-op): the
        # same figures, so they are not measured twice; a served adapter's general figures
        # were measured when it was the candidate, and kept in its version's directory
        served_cached = False
        if adapter_dir is None:
            served = dict(base)
        else:
            # read only: a registered version's files are hashed and must not change
            served_general, served_cached = _known_general_scores(
                recipe, general, adapter_dir.parent / EVAL_CACHE, base=False, key=key, keep=False
            )
            served = _scores(recipe, heldout, general, general_scores=served_general)
        preference = preference or PreferenceData()
        stage = (
            choose_stage(
                preference,
                min_pairs=settings.preference_min_pairs,
                min_rated=settings.preference_min_rated,
            )
            if objective != "sft" and is_peft_model(recipe.model)
            else None
        )
        if objective == "preference" and stage is None:
            raise Unprocessable(
                "learning_objective is preference, but there are not enough preference pairs "
                f"({preference.counts()}; need {settings.preference_min_pairs} pairs or "
                f"{settings.preference_min_rated} rated answers of both kinds)"
            )
        held_pairs = preference.heldout_pairs
        pref: dict[str, Any] = {"objective": objective, "data": preference.counts()}
        if held_pairs:
            pref["served"] = preference_accuracy(recipe.model, recipe.tokenizer, held_pairs)
        result = None
        if objective != "preference":
            try:
                result = recipe.train(prepared, checkpoint_dir=checkpoint_dir)
            except (torch.OutOfMemoryError, MemoryError) as exc:
                raise TrainingOutOfMemory(recipe.batch_size) from exc
        if stage is not None:
            if held_pairs:
                pref["sft"] = preference_accuracy(recipe.model, recipe.tokenizer, held_pairs)
            pref["stage"] = run_stage(
                stage,
                recipe.model,
                recipe.tokenizer,
                preference,
                steps=settings.preference_steps,
                lr=settings.preference_lr,
                beta=settings.preference_beta,
                batch_size=settings.preference_batch_size,
                max_length=cfg.seq_len,
                seed=settings.seed,
            )
        if held_pairs:
            pref["candidate"] = preference_accuracy(recipe.model, recipe.tokenizer, held_pairs)
        candidate_general = _general_scores(recipe, general)
        candidate = _scores(recipe, heldout, general, general_scores=candidate_general)
        gate = decide(
            served=served,
            candidate=candidate,
            base=base,
            best_general=best_general,
            heldout_tolerance=settings.heldout_tolerance,
            general_tolerance=settings.general_tolerance,
            general_accuracy_tolerance=settings.general_accuracy_tolerance,
            general_kind_tolerance=settings.general_kind_tolerance,
            preference=pref,
            preference_tolerance=settings.preference_tolerance,
        )
        recipe.save(out_dir / ADAPTER_DIR)
        # the next cycle serves this adapter and reads its general figures instead of
        # measuring them again
        if key is not None:
            base_scores.store(out_dir / EVAL_CACHE, key, candidate_general)
        hw = recipe.hardware
        stage_report = pref.get("stage") or {}
        return _Trained(
            gate=gate,
            train={
                "steps": result.steps if result else 0,
                "final_loss": _finite(result.final_loss) if result else None,
                "losses": result.losses if result else [],
                "tokens": result.tokens if result else 0,
                "trained_tokens": result.trained_tokens if result else 0,
                "seconds": round(result.seconds, 3) if result else 0.0,
                "tokens_per_s": round(result.tokens_per_s, 1) if result else None,
                "batch_size": result.batch_size if result else None,
                "memory_estimate_mib": round(result.memory_estimate_bytes / 2**20, 1)
                if result
                else None,
                "resumed_from": result.resumed_from if result else None,
                "chats": len(prepared.chats),
                "dropped_too_long": prepared.dropped,
                "validation": prepared.report.as_dict(),
                "objective": objective,
                "preference_stage": stage_report or None,
                "base_general_scores": "cached" if was_cached else "measured",
                "served_general_scores": (
                    None if adapter_dir is None else "cached" if served_cached else "measured"
                ),
            },
            hardware={
                "device": hw.device,
                "dtype": hw.dtype,
                "qlora": hw.qlora,
                "threads": hw.threads,
                "notes": hw.notes,
            },
        )
    finally:
        recipe.cleanup()


async def _retain_after_rejection(registry: ModelRegistry, name: str) -> None:
    """No deploy follows a rejection, so retention runs here: the newest rejected version is
    kept for inspection, older rejected and failed ones go (serving, previous, pinned and
    in-flight versions always stay)."""
    try:
        removed = await cleanup_versions(registry, name, keep_recent=1, keep_pending=True)
    except (HivemindError, OSError) as exc:
        log.warning("retention after a rejected cycle failed: %s", exc)
        return
    if removed:
        log.info("retention after a rejected cycle removed %s", removed)


async def _preference_data(redis: Any, settings: TrainerSettings) -> PreferenceData:
    """The preference records of tenants that consent now (read again at every cycle)."""
    records = PreferenceStore(settings.datasets_dir).records()
    kept, _dropped = await consenting(redis, {"preference": records})
    return load_preference_data(kept["preference"])


async def _best_general(registry: ModelRegistry, name: str) -> float | None:
    """The lowest general loss a deployable version reached on today's general set."""
    current = general_set_id(general_eval_items())
    losses = [
        float(mv.metrics["general_loss"])
        for mv in await registry.list(name)
        if mv.status in ("serving", "previous", "ready")
        and mv.metrics.get("general_set") == current
        and isinstance(mv.metrics.get("general_loss"), (int, float))
    ]
    return min(losses) if losses else None


def _check_same_tokenizer(
    registry: ModelRegistry, served: ModelVersion, now: dict[str, str | None]
) -> None:
    """Refuse to continue an adapter on a base whose tokenizer or chat template changed."""
    try:
        made_on = registry.read_manifest(served.name, served.version).get("base") or {}
    except NotFound:
        return
    differs = tokenizer_mismatch(
        made_on.get("tokenizer") or {} if isinstance(made_on, dict) else {}, now
    )
    if differs:
        raise Conflict(
            f"the base differs from the one adapter {served.name}/{served.version} was made on "
            f"({'; '.join(differs)}): the same token ids would mean other text. Point the "
            "trainer back at that base, or deploy a version made on the new one first",
            code="base_mismatch",
        )


def _fenced(progress: Progress | None, lease: LeaderLock) -> Progress:
    """A progress hook that stops training (by raising) once the lease has lapsed."""

    def hook(step: int, total: int, loss: float | None) -> None:
        lease.raise_if_lapsed()
        if progress is not None:
            progress(step, total, loss)

    return hook


async def _registered_for_job(
    redis: Any, settings: TrainerSettings, job_id: str
) -> ModelVersion | None:
    """A deployable version this job already registered (its export may not be queued)."""
    registry = ModelRegistry(redis, settings.data_dir)
    for mv in await registry.list(settings.model_name):
        if mv.job_id == job_id and mv.status == "ready":
            return mv
    return None


async def _mark_progress(redis: Any, mv: ModelVersion) -> None:
    """The learning state's progress as a registered version's dataset leaves it (what the
    cycle that registered it writes next; a job taken over after a kill in between would
    otherwise train the same samples again)."""
    seq_to = int((mv.dataset or {}).get("seq_to") or 0)
    if not seq_to:
        return
    state = keys.learning_state()
    field = "foundation_seq" if (mv.metrics or {}).get("foundation") else "trained_seq"
    current = int(await redis.hget(state, field) or 0)
    await redis.hset(state, mapping={field: max(current, seq_to), "failures": 0})


async def _is_registered(redis: Any, settings: TrainerSettings, version: str) -> bool:
    raw = await redis.hget(keys.model_versions(settings.model_name), version)
    return raw is not None


async def _queue_export(
    redis: Any, result: CycleResult, mv: ModelVersion, *, lease: LeaderLock | None
) -> CycleResult:
    """Hand a registered version to the exporter (after the fencing check)."""
    if lease is not None:
        await lease.check(f"queue the export of {mv.name}/{mv.version}")
    # queued first, then the stage: a trainer killed between the two once left the stage
    # "export" with nothing queued, and the reclaimed job, past training, was acknowledged;
    # the other way round a reclaimed job queues the export again, which the exporter
    # converges (an export already done goes straight to its deploy)
    await redis.xadd(
        keys.export_stream(),
        ExportJob(job_id=result.job_id, model=mv.name, version=mv.version).to_fields(),
        maxlen=keys.JOBS_STREAM_MAXLEN,
        approximate=True,
    )
    await update_job(redis, result.job_id, stage="export", version=mv.version)
    result.status, result.version = "exported", mv.version
    return result


async def run_cycle(
    redis: Any,
    settings: TrainerSettings,
    job_id: str | None = None,
    *,
    overrides: dict[str, str] | None = None,
    progress: Progress | None = None,
    requested_by: str = "orchestrator",
    reason: str = "threshold",
    consumer: str = "cycle",
    lease: LeaderLock | None = None,
    foundation: bool = False,
) -> CycleResult:
    """Run one whole cycle for ``settings.model_name``; never raises for a training failure.

    A ``foundation`` cycle trains on every imported sample (``hivemind learn import``) from the
    base, not from the served adapter: the version it makes is the base adapter that later
    cycles continue from, and those skip the imported samples it trained on (they may still
    come back as replay).

    With a ``lease``, training stops at the next step once the lease has lapsed, and the version
    is registered and its export queued only after the lease and its fencing token are checked
    in Redis; a lost lease raises :class:`LeadershipLost` and leaves the job to the new leader.
    """
    job_id = job_id or uuid.uuid4().hex[:16]
    await create_job(
        redis, job_id, model=settings.model_name, requested_by=requested_by, reason=reason
    )
    result = CycleResult(job_id=job_id, status="failed")
    state = keys.learning_state()
    t0 = time.perf_counter()
    out_dir: Path | None = None
    if lease is not None:
        progress = _fenced(progress, lease)
    try:
        earlier = await _registered_for_job(redis, settings, job_id)
        if earlier is not None:  # a leader died between registering and queueing the export
            await _mark_progress(redis, earlier)  # it may have died before this, too
            return await _queue_export(redis, result, earlier, lease=lease)
        await update_job(redis, job_id, status="running", stage="collect")
        collector = make_collector(redis, settings, consumer)
        await collector.drain()
        dataset = collector.dataset
        trained_seq = int(await redis.hget(state, "trained_seq") or 0)
        founded_seq = int(await redis.hget(state, "foundation_seq") or 0)

        def eligible(r: dict[str, Any]) -> bool:
            if foundation:
                return is_imported(r)
            return not (is_imported(r) and r["seq"] <= founded_seq)

        after = 0 if foundation else trained_seq
        # an attempt counts from here, trained or not: a cycle with nothing to train on once
        # returned before this, and the worker tried again at once, in a loop
        await redis.hset(state, mapping={"last_attempt_at": f"{time.time():.3f}"})
        newer = [r for r in dataset.records() if r["seq"] > after]
        if not any(r["split"] == "train" and eligible(r) for r in newer):
            error = (
                "no imported samples to train a foundation on (hivemind learn import FILE)"
                if foundation
                else "no new accepted samples to train on"
            )
            if not foundation and newer:
                # every newer sample is held out or an import a foundation run already took:
                # none of them is new for a cycle, so they stop counting toward the threshold
                seen = max(int(r["seq"]) for r in newer)
                await redis.hset(state, mapping={"trained_seq": max(trained_seq, seen)})
            await update_job(redis, job_id, status="failed", stage="done", error=error)
            result.status, result.error = "skipped", error
            return result
        frozen = dataset.freeze(
            after_seq=after,
            replay_ratio=0.0 if foundation else settings.replay_ratio,
            seed=settings.seed,
            only=eligible if foundation or founded_seq else None,
        )
        parts = dataset.load_version(frozen["version"])
        heldout = dataset.all_heldout(
            up_to_seq=frozen["seq_to"], only=is_imported if foundation else None
        )
        # consent read again now: a tenant that withdrew since collection trains nothing more
        consented, withdrawn = await consenting(redis, {**parts, "all_heldout": heldout})
        parts = {k: v for k, v in consented.items() if k != "all_heldout"}
        heldout = consented["all_heldout"]
        if withdrawn:
            log.info("left out %d samples of tenants that withdrew consent", withdrawn)
        if not parts["train"]:
            error = "no new samples of consenting tenants to train on"
            await update_job(redis, job_id, status="failed", stage="done", error=error)
            result.status, result.error = "skipped", error
            return result
        result.dataset_version = frozen["version"]
        result.timings["collect_s"] = round(time.perf_counter() - t0, 3)

        await update_job(redis, job_id, stage="train")
        registry = ModelRegistry(redis, settings.data_dir)
        name = settings.model_name
        gguf = settings.base_gguf or (None if settings.base_hf_dir else default_gguf())
        t1 = time.perf_counter()
        base_dir = await asyncio.to_thread(
            ensure_base_hf,
            gguf=gguf,
            hf_dir=settings.base_hf_dir,
            cache_root=registry.model_dir(name),
        )
        result.timings["base_s"] = round(time.perf_counter() - t1, 3)
        served = await registry.serving(name)
        adapter_dir = None
        if (
            not foundation  # a foundation starts from the base itself
            and served is not None
            and (Path(served.path) / ADAPTER_DIR / "adapter_config.json").is_file()
        ):
            adapter_dir = Path(served.path) / ADAPTER_DIR
        fingerprint = await asyncio.to_thread(tokenizer_fingerprint, base_dir)
        if adapter_dir is not None and served is not None:
            _check_same_tokenizer(registry, served, fingerprint)
        version = new_version_id()
        out_dir = registry.version_dir(name, version)
        if lease is not None:
            lease.raise_if_lapsed()
        cfg = recipe_config(settings, overrides)
        items = task_items(  # before training: a broken eval file fails the cycle at once
            heldout,
            general=general_eval_set(),
            eval_file=settings.task_eval_file,
            max_items=settings.task_eval_items,
            general_items=settings.task_eval_general_items,
        )
        t2 = time.perf_counter()
        train_kwargs: dict[str, Any] = {
            "base_dir": base_dir,
            "adapter_dir": adapter_dir,
            "train": _chats(parts["train"] + parts["replay"]),
            "heldout": _chats(heldout),
            "out_dir": out_dir,
            "checkpoint_dir": settings.work_dir / job_id,
            "settings": settings,
            "progress": progress,
            "best_general": await _best_general(registry, name),
            "preference": await _preference_data(redis, settings),
            # a base cached from a GGUF keeps its general scores beside it; a user's own HF
            # directory is not written to
            "base_scores_dir": None if settings.base_hf_dir else base_dir / EVAL_CACHE,
            # the cache folder's name is the base GGUF's sha256 (hivemind_common.base_cache)
            "base_identity": None if settings.base_hf_dir else base_dir.name,
        }
        try:
            trained = await asyncio.to_thread(train_and_gate, cfg=cfg, **train_kwargs)
        except TrainingOutOfMemory as oom:
            if oom.batch_size <= 1:
                raise
            smaller = max(1, oom.batch_size // 2)
            log.warning(
                "learning cycle %s ran out of memory at batch size %d; retrying once at %d",
                job_id,
                oom.batch_size,
                smaller,
            )
            shutil.rmtree(settings.work_dir / job_id, ignore_errors=True)  # its plan changes
            cfg = cfg.with_overrides({"batch_size": str(smaller)})
            trained = await asyncio.to_thread(train_and_gate, cfg=cfg, **train_kwargs)
            trained.train["oom_retry"] = {"from_batch_size": oom.batch_size, "batch_size": smaller}
        result.timings["train_and_evaluate_s"] = round(time.perf_counter() - t2, 3)
        await update_job(redis, job_id, stage="evaluate", version=version)
        gate = trained.gate
        status = "ready" if gate.deployable else "rejected"
        dataset_lineage = {
            "version": frozen["version"],
            "path": str(dataset.version_dir(frozen["version"])),
            **{
                k: frozen[k] for k in ("seq_from", "seq_to", "counts", "sources", "filter_versions")
            },
            "heldout_samples": len(heldout),
        }
        metrics = {
            "served_heldout_loss": _finite(gate.served["heldout"]),
            "heldout_loss": _finite(gate.candidate["heldout"]),
            "served_general_loss": _finite(gate.served["general"]),
            "base_heldout_loss": _finite(gate.base.get("heldout", math.nan)),
            "base_general_loss": _finite(gate.base.get("general", math.nan)),
            "general_set": general_set_id(general_eval_items()),
            "general_loss": _finite(gate.candidate["general"]),
            "general_accuracy": _finite(gate.candidate.get("general_accuracy", math.nan)),
            "base_general_accuracy": _finite(gate.base.get("general_accuracy", math.nan)),
            "general_turns_loss": _finite(gate.candidate.get("general_turns", math.nan)),
            "base_general_turns_loss": _finite(gate.base.get("general_turns", math.nan)),
            "train_loss": trained.train["final_loss"],
            "tokens_per_s": trained.train["tokens_per_s"],
            "deployable": gate.deployable,
            "objective": trained.train["objective"],
            "preference_stage": (trained.train["preference_stage"] or {}).get("stage"),
            "foundation": foundation,
            "preference_accuracy": gate.preference.get("candidate"),
            "served_preference_accuracy": gate.preference.get("served"),
            "sft_preference_accuracy": gate.preference.get("sft"),
        }
        base_info = {
            "gguf": str(gguf) if gguf else None,
            "hf_dir": str(base_dir),
            "tokenizer": fingerprint,
        }
        task_eval = write_eval_set(
            out_dir,
            items,
            heldout_chats=_chats(heldout),
            general_chats=general_eval_set(),
            general_set=metrics["general_set"],
            max_loss_chats=settings.served_loss_chats,
        )
        if lease is not None:
            await lease.check(f"register {name}/{version}")
        registry.write_manifest(
            name,
            version,
            {
                "name": name,
                "version": version,
                "status": status,
                "created_at": time.time(),
                "job_id": job_id,
                "base": base_info,
                "base_gguf": base_info["gguf"],
                "base_hf_dir": str(base_dir),
                "parent_version": served.version if served and not foundation else None,
                "foundation": foundation,
                "adapter_dir": ADAPTER_DIR,
                "dataset": dataset_lineage,
                "recipe": cfg.as_dict(),
                "hardware": trained.hardware,
                "train": trained.train,
                "metrics": metrics,
                "gate": gate.as_dict(),
                "task_eval": task_eval,
            },
        )
        await registry.register(
            ModelVersion(
                name=name,
                version=version,
                status=status,
                metrics=metrics,
                base=base_info["gguf"] or str(base_dir),
                parent_version=served.version if served and not foundation else None,
                dataset=dataset_lineage,
                job_id=job_id,
                error=None if gate.deployable else "; ".join(gate.reasons),
            )
        )
        progress_mark = (
            {"foundation_seq": max(founded_seq, frozen["seq_to"])}
            if foundation
            else {"trained_seq": frozen["seq_to"]}
        )
        await redis.hset(
            state,
            mapping={
                **progress_mark,
                "failures": 0,
                "last_result": status,
                "last_version": version,
                "last_success_at": f"{time.time():.3f}",
            },
        )
        shutil.rmtree(settings.work_dir / job_id, ignore_errors=True)
        result.version, result.gate, result.train = version, gate.as_dict(), trained.train
        if gate.deployable:
            await _queue_export(
                redis, result, ModelVersion(name=name, version=version), lease=lease
            )
        else:
            await update_job(
                redis,
                job_id,
                status="rejected",
                stage="done",
                version=version,
                error="; ".join(r for r in gate.reasons if "ok" not in r),
            )
            result.status = "rejected"
            await _retain_after_rejection(registry, name)
        CYCLES.labels(result=result.status).inc()
        return result
    except LeadershipLost:
        # another trainer leads now and will run this job: record nothing, leave no version
        log.warning("learning cycle %s stopped: leadership lost", job_id)
        if out_dir is not None and not await _is_registered(redis, settings, out_dir.name):
            shutil.rmtree(out_dir, ignore_errors=True)
        CYCLES.labels(result="abandoned").inc()
        raise
    except Exception as exc:  # a job boundary: every failure is recorded on the job, not lost
        message = exc.message if isinstance(exc, HivemindError) else f"{type(exc).__name__}: {exc}"
        log.exception("learning cycle %s failed", job_id)
        await redis.hincrby(state, "failures", 1)
        await redis.hset(
            state, mapping={"last_result": "failed", "last_failure_at": f"{time.time():.3f}"}
        )
        await update_job(redis, job_id, status="failed", error=message)
        CYCLES.labels(result="failed").inc()
        result.status, result.error = "failed", message
        return result
    finally:
        result.timings["total_s"] = round(time.perf_counter() - t0, 3)
