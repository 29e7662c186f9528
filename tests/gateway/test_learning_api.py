"""The gateway's learning API: samples onto the stream, train jobs queued, records readable."""

from __future__ import annotations

from typing import Any

import pytest
import redis as sync_redis

from hivemind_common import keys
from hivemind_common.jobs import LearningSample, TrainJob

CHAT = [
    {"role": "user", "content": "How do I list files?"},
    {"role": "assistant", "content": "Use ls -la."},
]


# the gateway's upstreams at a closed port: the learning routes need only Redis
NOTHING_BEHIND = {
    "embedding_url": "http://127.0.0.1:9",
    "inference_url": "http://127.0.0.1:9",
    "trainer_url": "http://127.0.0.1:9",
}


def stream(gateway: Any, key: str) -> list[tuple[str, dict[str, str]]]:
    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        return r.xrange(key)
    finally:
        r.close()


def test_a_sample_lands_on_the_learning_stream_with_the_callers_tenant(gateway: Any) -> None:
    with gateway.client("acme", "write") as c:
        resp = c.post(
            "/v1/learning/samples",
            json={"messages": CHAT, "rating": 1.0, "correction": "Use ls -la to see hidden files."},
        )
    assert resp.status_code == 200, resp.text
    entries = stream(gateway, keys.learning_stream())
    assert len(entries) == 1
    sample = LearningSample.from_fields(entries[0][1])
    assert sample.id == resp.json()["id"]
    assert (sample.tenant, sample.source, sample.rating) == ("acme", "api", 1.0)
    assert sample.messages[1].content == "Use ls -la."


def test_a_sample_may_carry_any_short_source_label(gateway: Any) -> None:
    with gateway.client("acme", "write") as c:
        ok = c.post("/v1/learning/samples", json={"messages": CHAT, "source": "claude-code"})
        assert ok.status_code == 200, ok.text
        for bad in ("", "has space", "x" * 33, "-lead"):
            resp = c.post("/v1/learning/samples", json={"messages": CHAT, "source": bad})
            assert 400 <= resp.status_code < 500, bad
    [(_, fields)] = stream(gateway, keys.learning_stream())
    assert LearningSample.from_fields(fields).source == "claude-code"


def test_bad_samples_get_a_clear_400_family_answer(gateway: Any) -> None:
    with gateway.client("acme", "write") as c:
        for body in (
            {"messages": []},
            {"messages": [{"role": "robot", "content": "x"}]},
            {"messages": [{"role": "assistant", "content": "no user turn"}]},
            {"messages": CHAT, "rating": 7},
            {"messages": CHAT, "tenant": "someone-else"},
            {"messages": [{"role": "user", "content": "x" * 40_000}]},
        ):
            resp = c.post("/v1/learning/samples", json=body)
            assert 400 <= resp.status_code < 500, (body, resp.status_code)
            assert resp.status_code != 500
    assert stream(gateway, keys.learning_stream()) == []


def test_reading_keys_cannot_submit_and_only_operators_can_train(gateway: Any) -> None:
    with gateway.client("acme", "read") as c:
        assert c.post("/v1/learning/samples", json={"messages": CHAT}).status_code == 403
        assert c.get("/v1/learning/status").status_code == 200
    for role in ("write", "admin"):
        with gateway.client("acme", role) as c:
            assert c.post("/v1/learning/train", json={}).status_code == 403, role
    assert stream(gateway, keys.jobs_stream()) == []


def test_a_tenants_admin_sees_neither_the_suite_nor_other_tenants_jobs(gateway: Any) -> None:
    with gateway.client("default", "operator") as op:
        job_id = op.post("/v1/learning/train", json={}).json()["job_id"]
        suite = op.get("/v1/learning/status").json()
        assert suite["jobs"][0]["job_id"] == job_id
        assert "leader" in suite["orchestrator"]
    for tenant, role in (("acme", "admin"), ("acme", "read")):
        with gateway.client(tenant, role) as c:
            assert c.get(f"/v1/learning/jobs/{job_id}").status_code == 404
            assert c.get("/v1/learning/jobs/nope").status_code == 404
            status = c.get("/v1/learning/status")
            assert status.status_code == 200
            body = status.json()
            assert body["jobs"] == []
            assert "leader" not in body["orchestrator"]
            assert job_id not in status.text and "api:" not in status.text
    # the operator's own tenant's admin sees the operator's job (same tenant), never its key id
    with gateway.client("default", "admin") as c:
        assert c.get(f"/v1/learning/jobs/{job_id}").status_code == 200
        assert [j["job_id"] for j in c.get("/v1/learning/status").json()["jobs"]] == [job_id]
        assert "api:" not in c.get("/v1/learning/status").text


def test_bad_recipe_overrides_are_400s_before_anything_is_queued(gateway: Any) -> None:
    """Unknown keys, NaN and negative sizes were queued (200) and failed the job later, after
    its data was collected and frozen; lr=nan trained."""
    with gateway.client("acme", "operator") as c:
        for overrides, param in (
            ({"bogus": "1"}, "overrides.bogus"),
            ({"lr": "nan"}, "overrides.lr"),
            ({"batch_size": "-5"}, "overrides.batch_size"),
            ({"max_steps": "three"}, "overrides.max_steps"),
        ):
            r = c.post("/v1/learning/train", json={"overrides": overrides})
            assert r.status_code == 400, (overrides, r.text)
            assert param.split(".")[1] in r.json()["detail"], r.text
        assert c.get("/v1/learning/status").json()["jobs"] == []
        ok = c.post("/v1/learning/train", json={"overrides": {"lr": "1e-4", "max_steps": "none"}})
        assert ok.status_code == 200, ok.text


def test_a_train_request_queues_a_job_whose_record_is_readable(gateway: Any) -> None:
    with gateway.client("acme", "operator") as c:
        resp = c.post("/v1/learning/train", json={"overrides": {"max_steps": "3"}})
        assert resp.status_code == 200, resp.text
        job_id = resp.json()["job_id"]
        job = c.get(f"/v1/learning/jobs/{job_id}").json()
        assert job == {
            "job_id": job_id,
            "status": "queued",
            "stage": "queued",
            "model": "default",
            "created_at": job["created_at"],
            "updated_at": job["updated_at"],
            "stage_started": {"queued": job["created_at"]},
        }
        assert c.get("/v1/learning/jobs/nope").status_code == 404
        assert c.get("/v1/learning/jobs/bad$id").status_code in (400, 404, 422)
        status = c.get("/v1/learning/status").json()
        assert status["jobs"][0]["job_id"] == job_id
        assert {"samples", "orchestrator"} <= set(status)
    queued = TrainJob.from_fields(stream(gateway, keys.jobs_stream())[0][1])
    assert (queued.job_id, queued.overrides, queued.reason) == (
        job_id,
        {"max_steps": "3"},
        "manual",
    )


def test_a_tenant_that_spent_its_daily_learning_budget_gets_429_and_others_go_on(
    redis_url: str, internal_token: str, data_dir: Any
) -> None:
    """The learning stream is shared: one tenant's samples are bounded in bytes a day, so it can
    neither fill Redis nor crowd the others' samples out of the stream."""
    from support.gateway import running_gateway

    turn = "x" * 30_000  # under the 32,000 characters a sample's message may hold
    big = [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(10)]
    with running_gateway(
        redis_url, internal_token, data_dir, **NOTHING_BEHIND, learning_mb_per_tenant_day=1
    ) as gw:
        with gw.client("acme", "write") as c:
            codes = [c.post("/v1/learning/samples", json={"messages": big}) for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429], [r.text for r in codes]
        assert int(codes[-1].headers["retry-after"]) > 0
        with gw.client("globex", "write") as other:
            assert other.post("/v1/learning/samples", json={"messages": big}).status_code == 200
    assert len(stream(gw, keys.learning_stream())) == 4


def test_one_tenants_small_samples_are_bounded_in_number_too(
    redis_url: str, internal_token: str, data_dir: Any
) -> None:
    """The stream is capped in entries, so a budget in bytes alone let one tenant's small
    samples push the others' unread ones off it: a tenant may queue so many samples a day."""
    from support.gateway import running_gateway

    tiny = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with running_gateway(
        redis_url, internal_token, data_dir, **NOTHING_BEHIND, learning_samples_per_tenant_day=3
    ) as gw:
        with gw.client("acme", "write") as c:
            codes = [c.post("/v1/learning/samples", json={"messages": tiny}) for _ in range(5)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429, 429], codes[-1].text
        assert "HIVEMIND_LEARNING_SAMPLES_PER_TENANT_DAY" in codes[-1].json()["detail"]
        assert int(codes[-1].headers["retry-after"]) > 0
        with gw.client("globex", "write") as other:
            assert other.post("/v1/learning/samples", json={"messages": tiny}).status_code == 200
    assert len(stream(gw, keys.learning_stream())) == 4


def test_captured_chats_past_the_daily_sample_count_are_left_out(redis_url: str) -> None:
    """Captures share the posted samples' budgets: past the count, a chat is still answered
    (capture returns None) but nothing more of the tenant goes on the stream."""
    import asyncio

    from hivemind_common.redis import connect_redis
    from hivemind_gateway.openai.capture import capture_chat

    async def run() -> list[str | None]:
        redis = connect_redis(redis_url)
        try:
            return [
                await capture_chat(
                    redis,
                    tenant=tenant,
                    messages=[{"role": "user", "content": "hi"}],
                    answer={"content": "hello"},
                    model_version=None,
                    retrieved=[],
                    latency_ms=1.0,
                    budget_samples=2,
                )
                for tenant in ("acme", "acme", "acme", "globex")
            ]
        finally:
            await redis.aclose()

    ids = asyncio.run(run())
    assert [i is not None for i in ids] == [True, True, False, True]
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = r.xrange(keys.learning_stream())
    finally:
        r.close()
    assert [LearningSample.from_fields(f).tenant for _, f in entries] == ["acme", "acme", "globex"]


def test_the_learning_budget_counts_bytes_not_characters() -> None:
    """Counted in characters, a sample of emoji stored four times the tenant's budget."""
    from hivemind_gateway.learning.budget import stored_bytes

    assert stored_bytes({"messages": "😀" * 10}) == len("messages") + 40
    assert stored_bytes({"n": 5}) == 2


def test_a_key_rate_must_be_a_number_not_true() -> None:
    import pydantic

    from hivemind_gateway.keys.schemas import KeyCreate

    with pytest.raises(pydantic.ValidationError):
        KeyCreate.model_validate({"role": "read", "rpm": True})
    assert KeyCreate.model_validate({"role": "read", "rpm": 60}).rpm == 60
