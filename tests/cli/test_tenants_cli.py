"""`hivemind tenants set|show` and `hivemind keys create --role operator --rpm N`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hivemind_cli.main import app


def _invoke(redis_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"HIVEMIND_REDIS_URL": redis_url})
    return result.exit_code, result.output


def test_tenants_set_and_show_round_trip_quotas_rate_and_consent(redis_url: str) -> None:
    code, out = _invoke(redis_url, "tenants", "show", "acme")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["share_training"] is False and shown["max_facts"] is None
    code, out = _invoke(
        redis_url,
        "tenants", "set", "acme",
        "--share-training", "--max-facts", "3", "--max-memories", "5",
        "--max-sessions", "7", "--max-docs", "9", "--max-cache-mb", "2", "--rpm", "60",
    )  # fmt: skip
    assert code == 0, out
    shown = json.loads(_invoke(redis_url, "tenants", "show", "acme")[1])
    assert shown == {
        "tenant": "acme",
        "share_training": True,
        "capture": None,
        "max_facts": 3,
        "max_memories": 5,
        "max_sessions": 7,
        "max_docs": 9,
        "max_cache_bytes": 2 * 1024 * 1024,
        "rpm": 60,
    }
    code, out = _invoke(redis_url, "tenants", "set", "acme", "--no-share-training", "--rpm", "0")
    shown = json.loads(_invoke(redis_url, "tenants", "show", "acme")[1])
    assert (shown["share_training"], shown["rpm"], shown["max_facts"]) == (False, None, 3)
    assert _invoke(redis_url, "tenants", "set", "a{b}", "--rpm", "1")[0] == 1


def test_an_operator_key_opts_its_own_tenant_in_and_others_stay_out(redis_url: str) -> None:
    code, out = _invoke(
        redis_url, "keys", "create", "--tenant", "owner", "--role", "operator", "--rpm", "120"
    )
    assert code == 0, out
    assert json.loads(_invoke(redis_url, "tenants", "show", "owner")[1])["share_training"]
    _invoke(redis_url, "keys", "create", "--tenant", "acme", "--role", "admin")
    assert not json.loads(_invoke(redis_url, "tenants", "show", "acme")[1])["share_training"]
    listed = _invoke(redis_url, "keys", "list", "--tenant", "owner")[1]
    assert "operator" in listed and "120" in listed
