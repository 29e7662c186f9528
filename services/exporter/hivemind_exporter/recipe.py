"""The export recipe: one trained version in, validated GGUF files out.

``setup`` loads the base and the PEFT adapter (and, for a quantized base GGUF, makes an f16 GGUF
of the same base weights once, cached by the base's sha256); ``export`` writes ``adapter.gguf``
(the fast path), merges and writes ``model-f16.gguf``, then ``model-<quant>.gguf``; ``validate``
checks them against the merged PyTorch model; ``save`` records sha256 sums, timings, validation and
what to serve in ``manifest.json``; ``cleanup`` frees the models. Blocking: run it off the event
loop.

The adapter is gated on the f16 base, not on the quantized base it is served with: llama.cpp
quantizes activations for a Q4 matmul, which moves near-tied logits by itself and would blame
the adapter for the base's rounding. Its agreement on the served base is measured and reported
beside the gate, as is the quantized file's.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hivemind_common.errors import HivemindError, Unprocessable
from hivemind_common.files import file_sha256
from hivemind_common.model_registry import ModelRegistry
from hivemind_common.task_eval import TASK_TOLERANCE
from hivemind_exporter.base_model import (
    BaseSpec,
    find_adapter_dir,
    gguf_alpha,
    load_adapter,
    load_base_model,
    merge_lora,
    resolve_base,
)
from hivemind_exporter.gguf_layout import ArchParams
from hivemind_exporter.gguf_write import (
    is_quantized_gguf,
    tokenizer_fields,
    write_adapter_gguf,
    write_model_gguf,
)
from hivemind_exporter.hf_base import ensure_hf_base_gguf
from hivemind_exporter.quantize import choose_quant, quantize_gguf
from hivemind_exporter.served_eval import Files, TaskEvalRejected, served_eval
from hivemind_exporter.settings import ServeChoice
from hivemind_exporter.validate import ReferenceLogits, chat_ends_with_stop, top1_agreement

log = logging.getLogger(__name__)

ADAPTER_GGUF = "adapter.gguf"
F16_GGUF = "model-f16.gguf"
EVAL_CACHE = "eval-cache"  # kept task eval results of the general set (served_eval.FixedResults)
BASE_F16_CACHE = "base-f16"  # $DATA_DIR/models/<name>/base-f16/<sha256 of the base GGUF>.gguf


class InsufficientStorage(HivemindError):
    status = 507
    code = "insufficient_storage"
    title = "Not enough free disk space for the export"


class ExportValidationFailed(HivemindError):
    status = 422
    code = "export_validation_failed"
    title = "The exported model does not match the trained one"


@dataclass
class ExportConfig:
    """One export: which version, which quant, what to serve and how strict to be."""

    name: str
    version: str
    quant: str | None = None
    serve: ServeChoice = "auto"
    min_agreement: float = 0.98
    require_chat_stop: bool = True
    check_quant: bool = False  # the quant file's agreement is measured when it is served anyway
    threads: int | None = None
    write_merged: bool = False  # f16 + quantized files even when base + adapter.gguf is served
    # the task eval on the served files (served_eval): against what serves now (None: the base)
    task_eval: bool = True
    task_eval_tolerance: float = TASK_TOLERANCE
    task_eval_max_tokens: int = 128
    served_files: dict[str, str | None] | None = None
    served_version: str | None = None


@dataclass
class ExportResult:
    """What an export produced: files, timings (s), validation and the files to serve."""

    version_dir: Path
    quant: str
    timings: dict[str, float] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    serve: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    task_eval: dict[str, Any] | None = None


class ExportRecipe:
    """setup → export → validate → save → cleanup, for one version of one model."""

    def __init__(self, config: ExportConfig, registry: ModelRegistry) -> None:
        self.config = config
        self.registry = registry
        self.version_dir = registry.version_dir(config.name, config.version)
        self.timings: dict[str, float] = {}
        self.model: Any = None
        self.base: BaseSpec | None = None

    def _timed(self, stage: str, started: float) -> None:
        self.timings[stage] = round(time.perf_counter() - started, 3)

    def setup(self) -> None:
        """Read the manifest, load the adapter and the base (dequantized, cached)."""
        started = time.perf_counter()
        self.manifest = self.registry.read_manifest(self.config.name, self.config.version)
        self.base = resolve_base(self.manifest)
        self.adapter_dir = find_adapter_dir(self.version_dir, self.manifest)
        self.adapter_config, self.lora_state = load_adapter(self.adapter_dir)
        self.model = load_base_model(self.base, self.registry.model_dir(self.config.name))
        self.params = ArchParams.from_config(self.model.config)
        if self.base.gguf is None and self.base.hf_dir is not None:  # a Hugging Face folder
            written = ensure_hf_base_gguf(
                self.base.hf_dir,
                self.registry.model_dir(self.config.name) / BASE_F16_CACHE,
                self.model.state_dict(),
                self.params,
                name=f"{self.config.name}-base",
            )
            self.base = replace(self.base, gguf=written)
        self.base_quantized = bool(self.base.gguf and is_quantized_gguf(self.base.gguf))
        if self.base.gguf is not None:
            tokenizer_fields(self.base.gguf)  # parse the base's tokenizer once, here (cached)
        self.quant = choose_quant(self.config.quant, base_quantized=self.base_quantized)
        self._sweep_temp_files()
        if self.base.gguf is not None:
            self._check_free_space()
        self._timed("load", started)
        started = time.perf_counter()
        self.adapter_base = self._adapter_base()
        self._timed("base_f16", started)

    def _base_f16_path(self) -> Path:
        assert self.base is not None and self.base.gguf is not None
        digest = file_sha256(self.base.gguf)
        return self.registry.model_dir(self.config.name) / BASE_F16_CACHE / f"{digest}.gguf"

    def _adapter_base(self) -> Path | None:
        """The GGUF the adapter is checked on: an unquantized base as it is, else its f16 copy.

        The copy holds the PyTorch base weights (the dequantized GGUF) in f16 and is written
        once per base: it is named by the base GGUF's sha256. Called before the merge.
        """
        assert self.base is not None
        if self.base.gguf is None or not self.base_quantized:
            return self.base.gguf
        out = self._base_f16_path()
        digest = out.stem
        if not out.is_file():
            log.info("writing the f16 base for adapter checks", extra={"gguf": str(out)})
            tmp = out.with_name(f"{digest}.{os.getpid()}.gguf")
            try:
                write_model_gguf(
                    self.model.state_dict(),
                    self.params,
                    tmp,
                    tokenizer_gguf=self.base.gguf,
                    name=f"{self.config.name}-base-f16",
                )
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        return out

    @property
    def writes_merged(self) -> bool:
        """Whether the merged f16 and quantized files are written: served, or asked for."""
        return self.config.write_merged or self.serve_choice()["lora"] is None

    def export(self) -> None:
        """Write the adapter GGUF, merge the adapter (in memory: the reference), and write the
        f16 and quantized files only when they are served or asked for."""
        if self.base is None or self.base.gguf is None:
            raise Unprocessable("export needs a GGUF base (its tokenizer is copied)")
        started = time.perf_counter()
        write_adapter_gguf(
            self.lora_state,
            self.params,
            self.version_dir / ADAPTER_GGUF,
            alpha=gguf_alpha(self.adapter_config),
            name=f"{self.config.name}-{self.config.version}-lora",
        )
        self._timed("adapter", started)

        started = time.perf_counter()
        merge_lora(self.model, self.adapter_config, self.lora_state)  # base weights in place
        self._timed("merge", started)
        if not self.writes_merged:
            return

        started = time.perf_counter()
        write_model_gguf(
            self.model.state_dict(),
            self.params,
            self.version_dir / F16_GGUF,
            tokenizer_gguf=self.base.gguf,
            name=f"{self.config.name}-{self.config.version}",
        )
        self._timed("f16", started)

        started = time.perf_counter()
        quantize_gguf(
            self.version_dir / F16_GGUF,
            self.version_dir / self.quant_file,
            self.quant,
            threads=self.config.threads,
        )
        self._timed("quantize", started)

    def _sweep_temp_files(self) -> None:
        """Temp files a killed export left in this version's folder (never complete files)."""
        if self.version_dir.is_dir():
            for stale in self.version_dir.glob(".*.tmp"):
                log.warning("removing %s left by an interrupted export", stale)
                stale.unlink(missing_ok=True)

    def _check_free_space(self) -> None:
        """Refuse early, with the numbers, when the files to write cannot fit on the disk."""
        n_params = sum(int(p.numel()) for p in self.model.parameters())
        need = 64 << 20  # the adapter, the manifest, slack
        if self.writes_merged:
            need += n_params * 2 + n_params  # f16, then a quantized copy (at most ~1 byte/param)
        if self.base_quantized and not self._base_f16_path().is_file():
            need += n_params * 2  # the f16 copy of the base the adapter is checked on
        self.version_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.version_dir).free
        if free < need:
            raise InsufficientStorage(
                f"exporting {self.config.name}/{self.config.version} needs about "
                f"{need / 2**30:.2f} GiB in {self.version_dir.parent} but {free / 2**30:.2f} GiB "
                "is free; free space (hivemind models cleanup) or move HIVEMIND_DATA_DIR"
            )

    @property
    def quant_file(self) -> str:
        return f"model-{self.quant}.gguf"

    def serve_choice(self) -> dict[str, str | None]:
        """The files inference should load: base + adapter for a quantized base (auto)."""
        assert self.base is not None and self.base.gguf is not None
        choice = self.config.serve
        if choice == "auto":
            choice = "adapter" if self.base_quantized else "quant"
        if choice == "adapter":
            return {"gguf": str(self.base.gguf), "lora": str(self.version_dir / ADAPTER_GGUF)}
        file = F16_GGUF if choice == "f16" else self.quant_file
        return {"gguf": str(self.version_dir / file), "lora": None}

    def validate(self) -> dict[str, Any]:
        """Raw top-1 agreement of the adapter (on the f16 base) and of the f16 export (gated);
        the adapter on the served quantized base and the quant file (reported); a chat."""
        assert self.base is not None and self.base.gguf is not None
        assert self.adapter_base is not None
        started = time.perf_counter()
        lora = self.version_dir / ADAPTER_GGUF
        reference = ReferenceLogits(self.model)  # PyTorch runs once for every file
        seconds: dict[str, float] = {}
        mark = time.perf_counter()

        def timed(what: str) -> None:
            nonlocal mark
            seconds[what], mark = round(time.perf_counter() - mark, 2), time.perf_counter()

        adapter = top1_agreement(reference, self.adapter_base, lora=lora)
        timed("adapter")  # with PyTorch's reference logits, computed here once
        gated = [("adapter", adapter)]
        report: dict[str, Any] = {
            "adapter": {**adapter.as_dict(), "base": self.adapter_base.name},
            "min_agreement": self.config.min_agreement,
            "gate": "raw top-1 agreement of adapter (on the f16 base) and f16 (when written)",
        }
        if self.writes_merged:
            f16 = top1_agreement(reference, self.version_dir / F16_GGUF)
            report["f16"] = f16.as_dict()
            gated.append(("f16", f16))
            timed("f16")
        if self.adapter_base != self.base.gguf:  # informational: the base it is served with
            served = top1_agreement(reference, self.base.gguf, lora=lora)
            report["adapter_on_served_base"] = {**served.as_dict(), "base": self.base.gguf.name}
            timed("adapter_on_served_base")
        quant_written = (self.version_dir / self.quant_file).is_file() and self.writes_merged
        if quant_written and (
            self.config.check_quant or str(self.serve_choice()["gguf"]).endswith(self.quant_file)
        ):
            report[self.quant] = top1_agreement(
                reference, self.version_dir / self.quant_file
            ).as_dict()
            timed(self.quant)
        serve = self.serve_choice()
        chat = chat_ends_with_stop(Path(str(serve["gguf"])), lora=_opt_path(serve["lora"]))
        report["chat"] = chat
        timed("chat")
        report["seconds"] = seconds
        self._timed("validate", started)
        failures = [
            f"{what} top-1 agreement {res.agreement:.4f} < {self.config.min_agreement} "
            f"over {res.positions} positions (near-ties counted as agreeing: {res.tie_aware:.4f})"
            for what, res in gated
            if res.agreement < self.config.min_agreement
        ]
        if self.config.require_chat_stop and not chat["stopped"]:
            failures.append(f"a greedy chat did not end with its stop token ({chat})")
        report["passed"] = not failures
        self.validation = report
        if failures:
            raise ExportValidationFailed("; ".join(failures), extra={"validation": report})
        return report

    def evaluate_served(self) -> dict[str, Any] | None:
        """The task eval and the losses in llama.cpp on the files that would be served, against
        the served version's files (:mod:`hivemind_exporter.served_eval`); raises
        :class:`TaskEvalRejected` when the candidate answers worse."""
        assert self.base is not None and self.base.gguf is not None
        if not self.config.task_eval:
            return None
        started = time.perf_counter()
        serve = self.serve_choice()
        # the general set's results are kept beside the files they were measured on: the
        # base's with its f16 copy, a candidate's in its version (read, never written, once it
        # serves: a registered version's files are hashed)
        base_cache = self.registry.model_dir(self.config.name) / BASE_F16_CACHE / EVAL_CACHE
        candidate = Files(
            "candidate",
            Path(str(serve["gguf"])),
            _opt_path(serve["lora"]),
            cache=self.version_dir / EVAL_CACHE,
            keep=True,
        )
        base = Files("base", self.base.gguf, cache=base_cache, keep=True)
        now = self.config.served_files
        served_version = self.config.served_version
        served = (
            Files(
                "served",
                Path(str(now["gguf"])),
                _opt_path(now.get("lora")),
                cache=self.registry.version_dir(self.config.name, served_version) / EVAL_CACHE
                if served_version
                else None,
            )
            if now and now.get("gguf") and Path(str(now["gguf"])).is_file()
            else Files("served", self.base.gguf, cache=base_cache, keep=True)
        )
        report = served_eval(
            self.version_dir,
            candidate,
            served,
            base,
            tolerance=self.config.task_eval_tolerance,
            threads=self.config.threads,
            max_tokens=self.config.task_eval_max_tokens,
        )
        self._timed("task_eval", started)
        if report is None:
            return None
        report["served_version"] = self.config.served_version if now else "base"
        self.task_eval = report
        if not report["passed"]:
            raise TaskEvalRejected("; ".join(report["reasons"]), extra={"task_eval": report})
        return report

    def save(self) -> dict[str, Any]:
        """Record the export in the manifest (sha256 sums are added by the caller, async)."""
        export = {
            "quant": self.quant if self.writes_merged else None,
            "merged_written": self.writes_merged,
            "base_quantized": self.base_quantized,
            "architecture": self.params.arch,
            "timings_s": self.timings,
            "validation": getattr(self, "validation", {}),
            "finished_at": time.time(),
        }
        extra: dict[str, Any] = {}
        if getattr(self, "task_eval", None) is not None:
            extra["task_eval"] = self.task_eval
        return self.registry.update_manifest(
            self.config.name, self.config.version, export=export, serve=self.serve_choice(), **extra
        )

    def cleanup(self) -> None:
        self.model = None
        self.lora_state = {}
        gc.collect()


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def run_export(config: ExportConfig, registry: ModelRegistry) -> ExportResult:
    """Run the whole recipe for one version (blocking); the manifest is updated in place."""
    recipe = ExportRecipe(config, registry)
    try:
        recipe.setup()
        recipe.export()
        try:
            recipe.validate()
            recipe.evaluate_served()
        finally:
            recipe.save()  # a failed validation or task eval is recorded too
        return ExportResult(
            version_dir=recipe.version_dir,
            quant=recipe.quant,
            timings=dict(recipe.timings),
            validation=recipe.validation,
            serve=recipe.serve_choice(),
            task_eval=getattr(recipe, "task_eval", None),
        )
    finally:
        recipe.cleanup()
