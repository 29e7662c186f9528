"""Export times on SmolLM2: LoRA adapter GGUF, merged f16 GGUF, quantized GGUF, validation.

A LoRA of the trainer's ``fast`` shape (r 8, alpha 16, attention projections) with small random
weights stands in for a trained adapter; the export recipe then runs exactly as the exporter
service runs it (adapter → merge → f16 → quantize → validate against PyTorch). The adapter is
gated on an f16 GGUF of the same base weights (written once per base, timed apart as
``base_f16_s``); its agreement on the served Q4_1 base is reported beside it. The quant is the
recipe's choice for this base (Q8_0, because SmolLM2 ships as Q4_1); Q5_K_M is timed beside it.

Targets (issue): adapter ≤ 1 s, f16 + quantized ≤ 15 s. The machine is shared; the 1-minute
load average is recorded with the figures. ``HIVEMIND_DATA_DIR`` (default ``var``) holds the
dequantized base cache, shared with the training benchmark.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _base_dir() -> tuple[Path, Path, float]:
    from hivemind_common.base_cache import ensure_base_hf
    from hivemind_common.models_paths import default_llm_gguf

    gguf = default_llm_gguf()
    model_dir = Path(os.environ.get("HIVEMIND_DATA_DIR", "var")) / "models" / "default"
    started = time.perf_counter()
    cache = ensure_base_hf(gguf, model_dir, tokenizer=False)  # dequantizes once, then cached
    return gguf, cache, time.perf_counter() - started


def _make_adapter(base: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="float32")
    config = LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    torch.manual_seed(0)
    with torch.no_grad():  # a small trained-looking B (PEFT starts it at zero)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.002)
    peft_model.save_pretrained(str(out))


def main(out_dir: Path) -> dict[str, Any]:
    from hivemind_common.model_registry import ModelRegistry
    from hivemind_exporter.quantize import quantize_gguf
    from hivemind_exporter.recipe import ExportConfig, run_export

    out_dir.mkdir(parents=True, exist_ok=True)
    gguf, base_hf, base_s = _base_dir()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        registry = ModelRegistry(None, Path(tmp))  # type: ignore[arg-type]  # files only
        version_dir = registry.version_dir("bench", "v1")
        _make_adapter(base_hf, version_dir / "adapter")
        registry.write_manifest(
            "bench", "v1", {"base": {"gguf": str(gguf), "hf_dir": str(base_hf)}}
        )
        started = time.perf_counter()
        result = run_export(
            ExportConfig(name="bench", version="v1", require_chat_stop=False, check_quant=True),
            registry,
        )
        total = time.perf_counter() - started
        started = time.perf_counter()
        quantize_gguf(version_dir / "model-f16.gguf", version_dir / "model-Q5_K_M.gguf", "Q5_K_M")
        q5_s = time.perf_counter() - started
        sizes = {
            p.name: round(p.stat().st_size / 2**20, 2) for p in sorted(version_dir.glob("*.gguf"))
        }
    t = result.timings
    report: dict[str, Any] = {
        "model": gguf.name,
        "quant": result.quant,
        "adapter_s": t["adapter"],
        "merge_s": t["merge"],
        "f16_s": t["f16"],
        "quantize_s": t["quantize"],
        "f16_plus_quant_s": round(t["f16"] + t["quantize"], 3),
        "f16_plus_quant_with_merge_s": round(t["merge"] + t["f16"] + t["quantize"], 3),
        "q5_k_m_quantize_s": round(q5_s, 3),
        "load_s": t["load"],
        "base_f16_s": t["base_f16"],  # once per base (cached by sha256); here a fresh registry
        "validate_s": t["validate"],
        "recipe_total_s": round(total, 3),
        "base_prepare_s": round(base_s, 3),
        "sizes_mib": sizes,
        "validation": result.validation,
        "targets": {"adapter_s": 1.0, "f16_plus_quant_s": 15.0},
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    (out_dir / "export.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    import sys

    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
