"""Embedding service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from hivemind_common.settings import ServiceSettings


class EmbeddingSettings(ServiceSettings):
    service_name: str = "embedding"

    # the model: any local sentence-transformers directory; None = the shipped all-MiniLM-L6-v2
    embedding_model_dir: Path | None = None
    # the id every vector is stored under; None = derived from the directory name
    embedding_model_id: str | None = None
    embedding_device: str = "cpu"
    # the encoder's torch threads in all (0 = auto: the machine's cores, at most 4), and how
    # many passes of one call run side by side on them (0 = auto: one per thread; 1 with
    # threads 2 is the old layout, one pass on both). Two threads on one pass wait for each
    # other at every operator, and for a descheduled one when other processes share the cores
    # (hivemind_embedding.encoder.plan_threads has the figures). How idle OpenMP workers wait
    # is set in __main__.py (GOMP_SPINCOUNT): libgomp's default made encodes 20-40x slower
    # under load.
    embedding_workers: int = Field(default=0, ge=0, le=64)
    embedding_threads: int = Field(default=0, ge=0, le=256)
    # matmul precision: auto = bfloat16 where the CPU has it natively (vectors within cosine
    # 0.99998 of float32's, ~25-40% faster here), float32 elsewhere
    embedding_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # a frozen TorchScript copy, traced in the serving precision, for every request (a one-text
    # query 4.8 -> 2.2 ms here with bfloat16); off by itself for models it cannot trace exactly
    embedding_fast_path: bool = True
    # a TorchInductor-compiled copy (C++ kernels: fused norms, GELU and casts, flash attention)
    # for passes of two or more texts, built on a thread of its own after start (~30 s of one
    # core; the traced copy answers meanwhile) and checked against float32 like the traced one:
    # ~1.5x the texts/s of the traced copy on batches, same precision. Needs a C++ compiler;
    # without one the traced copy stays.
    embedding_compile: bool = True
    # the compiled copy's attention in AMX tiles where the CPU has them (Intel Sapphire Rapids
    # and later; bfloat16): 1.25-1.4x its texts/s here, the same numerics as torch's
    # flash-attention kernel (hivemind_embedding.amx_attention); off: torch's everywhere
    embedding_amx_attention: bool = True

    # texts per forward pass: a batch is sorted by length and run in passes of this many, so
    # short texts are not padded to the batch's longest (4-10x the texts/s of one pass here)
    embedding_sub_batch: int = Field(default=16, ge=1, le=1024)

    # request limits
    embedding_max_texts: int = Field(default=256, ge=1)
    embedding_max_chars: int = Field(default=8192, ge=1, description="per text")
    embedding_max_total_chars: int = Field(default=262_144, ge=1, description="per request")

    # batching of concurrent requests
    embedding_batching: bool = True
    embedding_batch_window_ms: float = Field(default=4.0, ge=0)
    embedding_max_batch: int = Field(default=64, ge=1, description="texts per encoder call")
