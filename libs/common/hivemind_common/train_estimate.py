"""How much memory a training run needs, before it starts: pure Python (no torch import).

The trainer uses it to pick a batch size and to refuse a run that will not fit; ``hivemind learn
estimate`` prints it; the console's calculator imports it. A :class:`ModelShape` comes from a
Hugging Face ``config.json`` dict (:meth:`ModelShape.from_hf_config`) or a GGUF file's metadata
(:meth:`ModelShape.from_gguf_metadata`); :func:`estimate_memory` gives the parts in bytes.

The model (decoder-only, Llama-style: attention with grouped KV heads, gated MLP, RMS norms):

- **weights**: every parameter at the storage width of the run. LoRA keeps the frozen base in
  float32 on a CPU (its matmuls autocast to ``dtype``) and in ``dtype`` on a GPU; QLoRA stores
  the projection matrices in 4-bit NF4 (0.5 byte plus ~0.127 bit of double-quantized scales
  per weight) with embeddings, norms and head in bf16; a full run keeps float32 master weights
  (autocast computes in ``dtype``). LoRA's own A and B matrices are float32 in every mode.
- **gradients**: one float32 value per trainable parameter. They fill during the backward while
  the activations are freed layer by layer, so the peak counts the larger of the two, not both.
- **optimizer**: AdamW two float32 moments per trainable value, 8-bit AdamW two bytes, Muon one
  float32 momentum for its 2-D hidden matrices (and AdamW's two for the rest).
- **activations**: what autograd keeps for the backward per token and layer, measured on the
  recipe (packed rows, attention chat by chat through SDPA, so no L x L score matrix is kept):
  about ``ACT_HIDDEN`` hidden-size and ``ACT_INTERMEDIATE`` MLP-width values per token and layer
  (full fine-tuning keeps a few more), at the compute width (in bf16/fp16 a mix of widths, as
  the recipe keeps LoRA, attention and norms in float32), plus, where the matrices are stored
  wider than they compute, the autocast copy of each that autograd keeps. With gradient
  checkpointing only each layer's input is kept, plus one layer's worth while it is
  recomputed. The loss adds the float32 logits of the trained tokens (and their gradient) over
  the vocabulary; a checkpointed backward holds more of those buffers at its peak.
- **overhead**: the runtime itself (interpreter, torch, the tokenizer; a CUDA context on a GPU).

Validated against measured peaks on the shipped SmolLM2 on a CPU (``bench/bench_train_memory.py``;
the figures are in ``services/trainer/README.md``); GPU figures are not validated yet.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["lora", "qlora", "full"]
Optimizer = Literal["adamw", "adamw8bit", "muon"]
MODES: tuple[str, ...] = ("lora", "qlora", "full")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw8bit", "muon")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# activations kept per token and layer, in values (calibrated on SmolLM2, packed recipe, CPU:
# norms in float32, rotary, the per-chat attention's grouped K/V copies, the MLP's four
# intermediate-width tensors, LoRA's sums and the backward's transient buffers)
ACT_HIDDEN = 30.0  # multiples of hidden_size
ACT_INTERMEDIATE = 4.0  # multiples of intermediate_size
LOGIT_COPIES = 3.0  # float32 logits, softmax and its gradient, for each trained token
# under gradient checkpointing the peak comes in the backward, while a layer is recomputed and
# differentiated with the loss's buffers still held: on a CPU ~12 float32 logit rows per trained
# token in all (peak resident memory, fitted on the LoRA batch-4 run; the full runs are checks);
# on a GPU, not measured yet, the plain count applies
LOGIT_COPIES_CHECKPOINTED = 12.0
# bytes per kept activation value when the recipe computes in bf16/fp16: its LoRA branches,
# attention and norms stay float32, so what autograd keeps is a mix of both widths (fitted on
# the bf16 LoRA batch-1 and batch-4 runs on a CPU, rounded up so that neither reads low by
# more than 10%)
ACT_WIDTH_MIXED = 3.0
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit weights plus double-quantized scales
CPU_OVERHEAD = 450 << 20  # interpreter, torch, transformers, tokenizer
GPU_OVERHEAD = 600 << 20  # CUDA/ROCm context and allocator slack


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that set its training memory."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model shape: {name} must be a positive integer, got {value!r}")

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelShape:
        """From a Hugging Face ``config.json`` (Llama, Qwen2, Mistral, Phi-3 style keys)."""
        cfg = dict(config.get("text_config") or config)
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            return cls(
                hidden_size=hidden,
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                intermediate_size=int(cfg["intermediate_size"]),
                vocab_size=int(cfg["vocab_size"]),
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            )
        except KeyError as exc:
            raise ValueError(f"config.json has no {exc.args[0]!r}: not a decoder-only LM") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config.json has a bad size: {exc}") from exc

    @classmethod
    def from_gguf_metadata(
        cls, meta: dict[str, Any], *, tie_embeddings: bool | None = None
    ) -> ModelShape:
        """From GGUF key/values (``general.architecture`` and ``<arch>.*`` keys).

        ``tie_embeddings``: whether the file has no separate ``output.weight`` (a GGUF's
        metadata does not say; :func:`shape_from_path` looks at the tensors).
        """
        arch = meta.get("general.architecture")
        if not isinstance(arch, str):
            raise ValueError("GGUF metadata has no general.architecture")

        def key(name: str, default: Any = None) -> Any:
            value = meta.get(f"{arch}.{name}", default)
            if value is None:
                raise ValueError(f"GGUF metadata has no {arch}.{name}")
            return value

        heads = int(key("attention.head_count"))
        hidden = int(key("embedding_length"))
        kv = key("attention.head_count_kv", heads)
        vocab = meta.get(f"{arch}.vocab_size")
        if vocab is None:
            tokens = meta.get("tokenizer.ggml.tokens")
            if not tokens:
                raise ValueError("GGUF metadata has no vocabulary size")
            vocab = len(tokens)
        return cls(
            hidden_size=hidden,
            num_layers=int(key("block_count")),
            num_heads=heads,
            num_kv_heads=int(kv if not isinstance(kv, list) else max(kv)),
            head_dim=int(key("attention.key_length", hidden // heads)),
            intermediate_size=int(key("feed_forward_length")),
            vocab_size=int(vocab),
            tie_embeddings=True if tie_embeddings is None else tie_embeddings,
        )

    # --- parameter counts ------------------------------------------------------------------------
    @property
    def attention_params(self) -> int:
        """q, k, v, o of one layer."""
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        return self.hidden_size * (q + 2 * kv) + q * self.hidden_size

    @property
    def mlp_params(self) -> int:
        """gate, up, down of one layer."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus the head when it is not tied to them."""
        one = self.vocab_size * self.hidden_size
        return one if self.tie_embeddings else 2 * one

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    @property
    def matrix_params(self) -> int:
        """The hidden 2-D matrices (attention and MLP of every layer)."""
        return self.num_layers * (self.attention_params + self.mlp_params)

    @property
    def params(self) -> int:
        return self.matrix_params + self.embedding_params + self.norm_params

    def lora_params(self, rank: int, targets: tuple[str, ...] | None = None) -> int:
        """LoRA A and B over ``targets`` (q/k/v/o/gate/up/down_proj; default: all seven)."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        dims = {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        chosen = targets or tuple(dims)
        unknown = [t for t in chosen if t not in dims]
        if unknown:
            raise ValueError(f"unknown LoRA target(s): {', '.join(unknown)}")
        return self.num_layers * sum(rank * (dims[t][0] + dims[t][1]) for t in chosen)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training run at its peak, by part."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    trainable_params: int
    params: int

    @property
    def total(self) -> int:
        """The peak: the backward frees each layer's activations as it fills that layer's
        gradients, so the two overlap and the larger of them sets the peak."""
        return self.weights + self.optimizer + self.overhead + max(self.activations, self.gradients)

    def as_dict(self) -> dict[str, int]:
        out = asdict(self)
        out["total"] = self.total
        return out


def estimate_memory(
    shape: ModelShape,
    *,
    mode: str = "lora",
    seq_len: int,
    batch: int,
    optimizer: str = "adamw",
    checkpointing: bool = False,
    lora_rank: int = 8,
    dtype: str = "float32",
    lora_targets: tuple[str, ...] | None = ("q_proj", "k_proj", "v_proj", "o_proj"),
    trained_share: float = 0.6,
    device: str = "cpu",
    weight_dtype: str | None = None,
) -> MemoryEstimate:
    """The memory of a run (see the module's docstring for the model of each part).

    ``dtype`` is the compute width (``float32``, ``bfloat16`` or ``float16``); ``trained_share``
    the share of tokens that carry a label (logits are computed only for those); ``device``
    ``cpu`` or ``cuda``/``rocm``; ``weight_dtype`` the storage of a LoRA run's frozen base (by
    default as the recipe keeps it: float32 on a CPU, where the matmuls autocast, and
    ``dtype`` on a GPU).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}")
    if seq_len <= 0 or batch <= 0:
        raise ValueError("seq_len and batch must be positive")
    if mode != "full" and lora_rank <= 0:
        raise ValueError("lora_rank must be positive")
    if not 0.0 < trained_share <= 1.0:
        raise ValueError("trained_share must be in (0, 1]")
    width = DTYPE_BYTES[dtype]
    stored = weight_dtype or ("float32" if device == "cpu" else dtype)
    if stored not in DTYPE_BYTES:
        raise ValueError(f"weight_dtype must be one of {', '.join(DTYPE_BYTES)}")
    params = shape.params
    if mode == "full":
        trainable = params
        weights = params * 4  # float32 master weights
        matrix_trainable = shape.matrix_params
    else:
        trainable = shape.lora_params(lora_rank, lora_targets)
        if mode == "qlora":
            frozen = shape.matrix_params * NF4_BYTES + (params - shape.matrix_params) * 2
        else:
            frozen = params * DTYPE_BYTES[stored]
        weights = int(frozen) + trainable * 4
        matrix_trainable = trainable  # every LoRA matrix is a hidden 2-D matrix
    gradients = trainable * 4
    if optimizer == "adamw":
        optim = trainable * 8
    elif optimizer == "adamw8bit":
        optim = trainable * 2
    else:  # muon: one momentum for the hidden matrices, AdamW for the rest
        optim = matrix_trainable * 4 + (trainable - matrix_trainable) * 8

    tokens = batch * seq_len
    h, i = shape.hidden_size, shape.intermediate_size
    per_layer = ACT_HIDDEN * h + ACT_INTERMEDIATE * i
    act_width = 4 if dtype == "float32" else ACT_WIDTH_MIXED
    if checkpointing:  # each layer's input (the float32 residual stream), one layer recomputed
        kept = tokens * shape.num_layers * h * 4 + tokens * per_layer * act_width
        copies = LOGIT_COPIES_CHECKPOINTED if device == "cpu" else LOGIT_COPIES
    else:
        kept = tokens * shape.num_layers * per_layer * act_width
        copies = LOGIT_COPIES
        matrices_wider = mode == "full" or (mode == "lora" and DTYPE_BYTES[stored] > width)
        if matrices_wider and width < 4:  # autograd keeps each matrix's autocast copy
            kept += shape.matrix_params * width
    logits = tokens * trained_share * shape.vocab_size * 4 * copies
    activations = int(kept + logits)
    overhead = CPU_OVERHEAD if device == "cpu" else GPU_OVERHEAD
    return MemoryEstimate(
        weights=int(weights),
        gradients=int(gradients),
        optimizer=int(optim),
        activations=activations,
        overhead=overhead,
        trainable_params=int(trainable),
        params=int(params),
    )


def largest_batch(shape: ModelShape, *, budget_bytes: int, limit: int = 64, **kwargs: Any) -> int:
    """The largest batch (a power of two up to ``limit``) whose estimate fits ``budget_bytes``;
    0 when not even one row fits."""
    best = 0
    batch = 1
    while batch <= limit:
        if estimate_memory(shape, batch=batch, **kwargs).total > budget_bytes:
            break
        best = batch
        batch *= 2
    return best


def shape_from_path(path: Path) -> ModelShape:
    """A model's shape from a Hugging Face directory, its ``config.json``, or a ``.gguf`` file.

    Reading a GGUF needs the ``gguf`` package (pure Python); only its header is read.
    """
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".gguf":
        return _gguf_shape(path)
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a model config")
    return ModelShape.from_hf_config(config)


def _gguf_shape(path: Path) -> ModelShape:
    try:
        from gguf import GGUFReader  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - gguf ships with the exporter
        raise ValueError("reading a GGUF needs the gguf package") from exc
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable GGUF: {exc}") from exc
    meta: dict[str, Any] = {}
    for name, fld in reader.fields.items():
        if name == "tokenizer.ggml.tokens":
            meta[name] = range(len(fld.data))  # only its length matters
            continue
        if not fld.data:
            continue
        try:
            value = fld.contents()
        except (ValueError, IndexError, TypeError):
            continue
        if isinstance(value, (int, float, str, list)):
            meta[name] = value
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    return ModelShape.from_gguf_metadata(meta, tie_embeddings=not has_output)


def fits_message(estimate: MemoryEstimate, *, available_bytes: int, what: str = "the run") -> str:
    """One line saying why ``what`` does not fit, part by part."""
    mib = 1 << 20
    parts = ", ".join(
        f"{k} {v / mib:.0f} MiB"
        for k, v in estimate.as_dict().items()
        if k not in {"total", "trainable_params", "params"}
    )
    return (
        f"{what} needs about {estimate.total / mib:.0f} MiB ({parts}) but only "
        f"{available_bytes / mib:.0f} MiB is available: lower seq_len or batch, enable gradient "
        "checkpointing, or choose lora/qlora or the adamw8bit optimizer"
    )
