"""The gateway's /v1/models/versions, promote and rollback over HTTP, with a real inference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inference.serving import running_inference

from support.gateway import RunningGateway, running_gateway
from support.model_versions import register_version

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    with (
        running_inference(internal_token, redis_url) as inference_url,
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            inference_url=inference_url,
            embedding_url="http://127.0.0.1:9",
            trainer_url="http://127.0.0.1:9",
        ) as gw,
    ):
        yield gw


def _register(redis_url: str, data_dir: Path, version: str, created_at: float) -> None:
    register_version(redis_url, data_dir, version, created_at, {"heldout_loss": 1.5})


def test_versions_are_listed_promoted_and_rolled_back(
    stack: RunningGateway, redis_url: str, data_dir: Path
) -> None:
    _register(redis_url, data_dir, "v1", 1.0)
    _register(redis_url, data_dir, "v2", 2.0)
    reader = stack.client(role="read")
    listed = reader.get("/v1/models/versions").json()
    pairs = [(d["version"], d["status"]) for d in listed["data"]]
    assert pairs == [("v1", "ready"), ("v2", "ready")]
    assert listed["data"][0]["metrics"] == {"heldout_loss": 1.5}

    operator = stack.client(role="operator")
    first = operator.post("/v1/models/default/promote", json={"version": "v1"})
    assert first.status_code == 200, first.text
    second = operator.post("/v1/models/default/promote", json={"version": "v2"})
    assert second.json()["previous_version"] == "v1"
    chat = reader.post(
        "/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert chat.status_code == 200, chat.text
    assert chat.headers.get("x-hivemind-model-version") == "v2"

    back = operator.post("/v1/models/default/rollback")
    assert back.status_code == 200, back.text
    assert back.json()["version"] == "v1"
    statuses = {d["version"]: d["status"] for d in reader.get("/v1/models/versions").json()["data"]}
    assert statuses == {"v1": "serving", "v2": "previous"}


def test_promote_and_rollback_need_an_operator_key_and_answer_problem_json(
    stack: RunningGateway, redis_url: str, data_dir: Path
) -> None:
    _register(redis_url, data_dir, "v1", 1.0)
    for role in ("write", "admin"):  # a tenant's admin does not steer the shared model
        refused = stack.client(role=role).post("/v1/models/default/promote", json={"version": "v1"})
        assert refused.status_code == 403, role
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert stack.client(role=role).post("/v1/models/default/rollback").status_code == 403

    admin = stack.client(role="operator")
    missing = admin.post("/v1/models/default/promote", json={"version": "v9"})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    bad = admin.post("/v1/models/default/promote", json={"version": "../x"})
    assert 400 <= bad.status_code < 500
    no_previous = admin.post("/v1/models/default/rollback")
    assert no_previous.status_code == 409
    # the OpenAI model route next door still answers in its own format
    assert stack.client(role="read").get("/v1/models/default").status_code == 200
