"""The retrieval log keeps no secrets and nothing older than its retention."""

from __future__ import annotations

import time
from typing import Any

import redis as sync_redis

from hivemind_common import keys

SECRET = "sk-proj-" + "Q" * 30


def _log(gateway: Any, tenant: str = "acme") -> list[dict[str, str]]:
    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        return [fields for _, fields in r.xrange(keys.rag_log(tenant))]
    finally:
        r.close()


def test_logged_queries_are_scrubbed_of_secrets(gateway: Any) -> None:
    query = f"why does my deploy fail with api_key={SECRET} and token ghp_{'a' * 36}"
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/rag/context", json={"query": query}).status_code == 200
        shown = c.get("/v1/rag/suggestions").text
    [entry] = _log(gateway)
    assert SECRET not in entry["query"] and "ghp_" not in entry["query"]
    assert "[REDACTED:" in entry["query"] and "deploy" in entry["query"]
    assert SECRET not in shown


def test_entries_older_than_the_retention_are_trimmed_and_never_suggested(
    redis_url: str, internal_token: str, data_dir: Any
) -> None:
    from support.gateway import running_gateway

    with running_gateway(
        redis_url,
        internal_token,
        data_dir,
        embedding_url="http://127.0.0.1:9",
        inference_url="http://127.0.0.1:9",
        trainer_url="http://127.0.0.1:9",
        rag_log_retention_days=1,
    ) as gw:
        r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
        two_days_ago = int((time.time() - 2 * 86400) * 1000)
        old = {"ts": "0", "query": "zanzibar ferry timetable", "quality": "miss", "keys": ""}
        r.xadd(keys.rag_log("acme"), old, id=f"{two_days_ago}-0")
        with gw.client("acme", "write") as c:
            topics = [s["topic"] for s in c.get("/v1/rag/suggestions").json()["data"]]
            assert "zanzibar" not in topics  # out of retention: not read even before a trim
            assert c.post("/v1/rag/context", json={"query": "quokka census"}).status_code == 200
        queries = [f["query"] for f in _log(gw)]
        assert queries == ["quokka census"]
        r.close()
