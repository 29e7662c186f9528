"""The key schema: no two families or ids make the same Redis key; Redis errors are ours."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as redis_errors

from hivemind_common import keys
from hivemind_common.error_handlers import from_redis_error
from hivemind_common.errors import Conflict, Invalid, Timeout, Unavailable
from hivemind_common.ids import FACT_KEY_PATTERN, ID_PATTERN, NAME_PATTERN, TOKEN_PATTERN

tenants = st.sampled_from(["acme", "acme:x", "b"]).filter(keys.valid_tenant)
free_ids = st.from_regex(ID_PATTERN, fullmatch=True)
fact_keys = st.from_regex(FACT_KEY_PATTERN, fullmatch=True)
names = st.from_regex(NAME_PATTERN, fullmatch=True)
tokens = st.from_regex(TOKEN_PATTERN, fullmatch=True)
# ids that end in the suffixes or begin with the prefixes of other families
windows = st.integers(min_value=0, max_value=2**40)
tricky = st.sampled_from(["x", "memories", "x:memories", "sessions", "fact", "vec:m:fact:a"])
any_id = st.one_of(free_ids, tricky)

# Every family: its builder and the strategies of its arguments after the tenant (if any).
FAMILIES: dict[str, tuple[Callable[..., str], tuple[Any, ...]]] = {
    "fact": (keys.fact, (tenants, st.one_of(fact_keys, tricky))),
    "facts_index": (keys.facts_index, (tenants,)),
    "session": (keys.session, (tenants, any_id)),
    "sessions_recent": (keys.sessions_recent, (tenants,)),
    "memory": (keys.memory, (tenants, any_id)),
    "memories_index": (keys.memories_index, (tenants,)),
    "session_memories": (keys.session_memories, (tenants, any_id)),
    "vector": (keys.vector, (tenants, names, st.sampled_from(["fact", "memory", "doc"]), any_id)),
    "vector_models": (keys.vector_models, (tenants,)),
    "vector_claim": (
        keys.vector_claim,
        (tenants, st.sampled_from(["fact", "memory", "doc"]), any_id),
    ),
    "write_claim": (
        keys.write_claim,
        (tenants, st.sampled_from(["memory", "doc"]), any_id),
    ),
    "changes": (keys.changes, (tenants,)),
    "tool_cache": (keys.tool_cache, (tenants, names, tokens)),
    "response_cache": (keys.response_cache, (tenants, tokens)),
    "rag_log": (keys.rag_log, (tenants,)),
    "rag_counters": (keys.rag_counters, (tenants,)),
    "tenant_settings": (keys.tenant_settings, (tenants,)),
    "request_window": (keys.request_window, (tenants, windows)),
    "inference_leases": (keys.inference_leases, (tenants,)),
    "learning_bytes": (keys.learning_bytes, (tenants, windows)),
    "learning_samples": (keys.learning_samples, (tenants, windows)),
    "key_request_window": (keys.key_request_window, (tokens, windows)),
    "tool_cache_sizes": (keys.tool_cache_sizes, (tenants,)),
    "tool_cache_expiry": (keys.tool_cache_expiry, (tenants,)),
    "tool_cache_bytes": (keys.tool_cache_bytes, (tenants,)),
    "quota_reservations": (keys.quota_reservations, (tenants, st.sampled_from(["fact", "memory"]))),
    "tenant_learning_counts": (keys.tenant_learning_counts, (tenants,)),
    "learning_stream": (keys.learning_stream, ()),
    "learning_state": (keys.learning_state, ()),
    "leader_lock": (keys.leader_lock, (st.sampled_from(["trainer", "exporter"]),)),
    "export_stream": (keys.export_stream, ()),
    "learning_seen": (keys.learning_seen, ()),
    "dead_letters": (keys.dead_letters, ()),
    "learning_rejections": (keys.learning_rejections, ()),
    "learning_sources": (keys.learning_sources, ()),
    "migration_done": (keys.migration_done, (names,)),
    "api_key": (keys.api_key, (tokens,)),
    "api_keys_index": (keys.api_keys_index, ()),
    "api_key_revocations": (keys.api_key_revocations, ()),
    "console_session": (keys.console_session, (tokens,)),
    "tenants_index": (keys.tenants_index, ()),
    "tenant_api_keys": (keys.tenant_api_keys, (tenants,)),
    "tenant_api_keys_counted": (keys.tenant_api_keys_counted, ()),
    "audit_stream": (keys.audit_stream, ()),
    "job": (keys.job, (tokens,)),
    "jobs_index": (keys.jobs_index, ()),
    "jobs_stream": (keys.jobs_stream, ()),
    "model_versions": (keys.model_versions, (names,)),
    "model_serving": (keys.model_serving, (names,)),
    "served_model_version": (keys.served_model_version, (names,)),
    "models_index": (keys.models_index, ()),
    "model_deploy_lock": (keys.model_deploy_lock, (names,)),
    "doc": (keys.doc, (tenants, any_id)),
    "docs_index": (keys.docs_index, (tenants,)),
    "doc_collection": (keys.doc_collection, (tenants, st.one_of(names, tricky))),
    "doc_chunk": (keys.doc_chunk, (tenants, any_id)),
    "doc_chunks_index": (keys.doc_chunks_index, (tenants,)),
}


@st.composite
def key_calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], str]:
    family = draw(st.sampled_from(sorted(FAMILIES)))
    build, arg_strategies = FAMILIES[family]
    args = tuple(draw(s) for s in arg_strategies)
    return family, args, build(*args)


@given(key_calls(), key_calls())
@settings(max_examples=400, deadline=None)
def test_different_families_or_ids_never_make_the_same_key(
    a: tuple[str, tuple[Any, ...], str], b: tuple[str, tuple[Any, ...], str]
) -> None:
    if (a[0], a[1]) != (b[0], b[1]):
        assert a[2] != b[2], f"{a[0]}{a[1]} and {b[0]}{b[1]} are both {a[2]}"


NOT_BUILDERS = {"valid_tenant", "parse_legacy_session_memories", "parse_vector"}


def test_every_key_family_is_in_the_collision_property() -> None:
    builders = {
        name
        for name, fn in inspect.getmembers(keys, inspect.isfunction)
        if fn.__module__ == keys.__name__ and not name.startswith("_")
    }
    missing = builders - NOT_BUILDERS - set(FAMILIES)
    assert not missing, f"add these key families to FAMILIES above: {sorted(missing)}"
    assert set(FAMILIES) <= builders


def test_a_session_named_like_a_memory_set_is_its_own_key() -> None:
    assert keys.session("acme", "x:memories") != keys.session_memories("acme", "x")


def test_a_part_that_is_not_last_cannot_hold_the_separator() -> None:
    with pytest.raises(Invalid):
        keys.model_versions("a:b")
    with pytest.raises(Invalid):
        keys.tool_cache("acme", "web:search", "abc")


@pytest.mark.parametrize(
    ("error", "ours", "status"),
    [
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), Conflict, 409),
        (redis_errors.WatchError(), Conflict, 409),
        (redis_errors.OutOfMemoryError("OOM command not allowed"), Unavailable, 503),
        (redis_errors.ReadOnlyError("READONLY"), Unavailable, 503),
        (redis_errors.ConnectionError("refused"), Unavailable, 503),
        (redis_errors.TimeoutError(), Timeout, 504),
    ],
)
def test_redis_errors_map_into_the_error_tree(error: Exception, ours: type, status: int) -> None:
    mapped = from_redis_error(error)  # type: ignore[arg-type]
    assert isinstance(mapped, ours)
    assert mapped.status == status


def test_a_session_named_x_memories_lives_beside_session_x(gateway) -> None:
    with gateway.client() as c:
        made = c.post("/v1/memories", json={"text": "a note", "session_id": "x"})
        assert made.status_code == 201, made.text
        put = c.put("/v1/sessions/x:memories/context", json={"context": "other work"})
        assert put.status_code == 200, put.text
        assert c.get("/v1/sessions/x").json()["memories"] == 1
        assert c.get("/v1/sessions/x:memories").json()["context"] == "other work"
        listed = c.get("/v1/memories", params={"session_id": "x"}).json()
        assert [m["text"] for m in listed["data"]] == ["a note"]


def test_a_wrongly_typed_key_answers_409_not_500(gateway) -> None:
    with gateway.client() as c:
        c.post("/v1/sessions", json={"id": "s1", "context": "work"}).raise_for_status()
        # break the session's key behind the gateway's back: a string where a hash belongs
        raw = redis.Redis.from_url(gateway.redis_url)
        raw.delete(keys.session("acme", "s1"))
        raw.set(keys.session("acme", "s1"), "not a hash")
        resp = c.get("/v1/sessions/s1")
    assert resp.status_code == 409
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "store_conflict"
