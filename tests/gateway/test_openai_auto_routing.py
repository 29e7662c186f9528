"""Several named models on one inference service, and ``model: "auto"`` routing between them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from inference.serving import gateway_with_llm, running_inference

from hivemind_common.models_paths import default_llm_gguf
from support.gateway import RunningGateway

pytestmark = pytest.mark.slow


@pytest.fixture
def two_models(
    redis_url: str, internal_token: str, data_dir: Path, tmp_path: Path
) -> Iterator[RunningGateway]:
    """'small' and 'large' (two SmolLM2 copies), with auto sending long or coding work to large."""
    large = tmp_path / "large.gguf"
    large.write_bytes(default_llm_gguf().read_bytes())
    models = [
        {"name": "small", "gguf": str(default_llm_gguf()), "n_ctx": 512, "version": "s1"},
        {"name": "large", "gguf": str(large), "n_ctx": 1024, "version": "l1", "aliases": ["big"]},
    ]
    with (
        running_inference(internal_token, redis_url, models=models) as url,
        gateway_with_llm(
            redis_url,
            internal_token,
            data_dir,
            inference_url=url,
            auto_small_model="small",
            auto_large_model="large",
            auto_large_above_chars=300,
            auto_large_tasks=("code-assist",),
        ) as gw,
    ):
        yield gw


def test_auto_routes_by_prompt_length_and_task(two_models: RunningGateway) -> None:
    client = openai.OpenAI(
        base_url=two_models.url + "/v1", api_key=two_models.key(role="read"), max_retries=0
    )
    listed = {m.id: m.model_extra for m in client.models.list()}
    assert listed["small"]["version"] == "s1" and listed["large"]["version"] == "l1"  # type: ignore[index]
    assert listed["auto"]["routes_to"] == {"small": "small", "large": "large"}  # type: ignore[index]

    def ask(text: str, **extra: object) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": text}],
            max_tokens=2,
            extra_body={"hivemind": {"rag": False, **extra}},
        )
        return f"{raw.parse().model}@{raw.headers['x-hivemind-model-version']}"

    assert ask("hi") == "small@s1"
    assert ask("tell me about this: " + "lorem ipsum " * 40) == "large@l1"
    assert ask("hi", task="code-assist") == "large@l1"
    direct = client.chat.completions.create(
        model="big", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert direct.model == "large"


def test_models_settings_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hivemind_inference.settings import InferenceSettings

    spec = [{"name": "coder", "gguf": "/m/coder.gguf", "lora": "/m/a.gguf", "threads": 4}]
    monkeypatch.setenv("HIVEMIND_MODELS", json.dumps(spec))
    settings = InferenceSettings(internal_token="x")
    [model] = settings.model_specs()
    assert model.name == "coder" and str(model.lora) == "/m/a.gguf"
    assert settings.threads_for(model) == 4
    monkeypatch.delenv("HIVEMIND_MODELS")
    [default] = InferenceSettings(internal_token="x").model_specs()
    assert default.name == "default" and default.gguf == default_llm_gguf()
    assert "smollm2-135m-instruct" in default.aliases
