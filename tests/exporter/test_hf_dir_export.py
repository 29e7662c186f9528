"""A version whose base is a Hugging Face folder exports: we write its f16 GGUF (weights and
tokenizer), merge, quantize with llama.cpp and serve the quantized file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from exporter.exporter_tiny import TinyModel, build_tiny, make_adapter

from hivemind_common.errors import Unprocessable
from hivemind_common.model_registry import ModelRegistry
from hivemind_exporter.hf_base import HF_BASE_PREFIX, pre_tokenizer_name
from hivemind_exporter.recipe import BASE_F16_CACHE, ExportConfig, run_export

TEXTS = [
    "Hello world",
    "  two  spaces, digits 12345 and 3.14159\nnew line\ttab",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "naïve café — ünïcödé ✓ 日本語",
]


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> TinyModel:
    """A tiny llama saved as a Hugging Face folder with SmolLM2's tokenizer, and no GGUF."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("hf-base")
    model = build_tiny("llama")
    hf_dir = root / "hf"
    model.save_pretrained(str(hf_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    tokenizer.save_pretrained(str(hf_dir))
    return TinyModel(arch="llama", model=model, hf_dir=hf_dir, base_gguf=Path("/nonexistent"))


def _version(registry: ModelRegistry, base: TinyModel, version: str) -> Path:
    directory = registry.version_dir("default", version)
    make_adapter(base, directory / "adapter")
    registry.write_manifest("default", version, {"base": str(base.hf_dir)})
    return directory


def _llama_tokens(gguf: Path, text: str) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return list(llm.tokenize(text.encode(), add_bos=False, special=True))


def test_a_hugging_face_folder_base_exports_quantized_and_serves(
    hf_base: TinyModel, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    registry = ModelRegistry(None, tmp_path)  # type: ignore[arg-type]  # files only
    directory = _version(registry, hf_base, "v1")
    result = run_export(
        ExportConfig(name="default", version="v1", require_chat_stop=False, task_eval=False),
        registry,
    )
    served = Path(str(result.serve["gguf"]))
    assert result.serve["lora"] is None
    assert served == directory / f"model-{result.quant}.gguf" and served.is_file()
    assert (directory / "model-f16.gguf").is_file()
    assert (directory / "adapter.gguf").is_file()
    assert result.validation["passed"]
    assert result.validation["f16"]["top1_agreement"] >= result.validation["min_agreement"]
    cached = list((registry.model_dir("default") / BASE_F16_CACHE).glob(f"{HF_BASE_PREFIX}*.gguf"))
    assert len(cached) == 1
    assert not list(directory.glob(".*.tmp"))

    # what llama.cpp tokenizes from the files we wrote is what the folder's tokenizer makes
    tokenizer = AutoTokenizer.from_pretrained(str(hf_base.hf_dir))
    for text in TEXTS:
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert _llama_tokens(served, text) == expected, text
        assert _llama_tokens(cached[0], text) == expected, text
    meta = _metadata(served)
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id

    # a second version reuses the written base
    stamp = cached[0].stat().st_mtime_ns
    _version(registry, hf_base, "v2")
    run_export(
        ExportConfig(name="default", version="v2", require_chat_stop=False, task_eval=False),
        registry,
    )
    assert cached[0].stat().st_mtime_ns == stamp


def _metadata(path: Path) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    meta: dict[str, Any] = dict(llm.metadata)
    meta["tokenizer.ggml.eos_token_id"] = int(meta["tokenizer.ggml.eos_token_id"])
    return meta


@pytest.mark.parametrize(
    ("pre", "name"),
    [
        ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": True},
                    {"type": "ByteLevel", "use_regex": True},
                ],
            },
            "smollm",
        ),
    ],
)
def test_pre_tokenizers_get_llama_cpp_names(pre: dict[str, Any], name: str) -> None:
    assert pre_tokenizer_name({"pre_tokenizer": pre}) == name


def test_an_unknown_pre_tokenizer_is_refused_with_a_reason() -> None:
    pre = {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}
    with pytest.raises(Unprocessable, match="export from a GGUF base"):
        pre_tokenizer_name({"pre_tokenizer": pre})
