"""The CLI's admin and operator commands leave audit entries (from "cli", by the local user);
`hivemind audit` lists them with filters; reads leave none."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hivemind_cli.audit_cmd import parse_since
from hivemind_cli.main import app


def _invoke(redis_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"HIVEMIND_REDIS_URL": redis_url})
    return result.exit_code, result.stdout


def _audit(redis_url: str, *args: str) -> list[dict[str, object]]:
    code, out = _invoke(redis_url, "audit", "--json", *args)
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_keys_and_tenants_commands_are_audited_and_reads_are_not(redis_url: str) -> None:
    code, out = _invoke(redis_url, "keys", "create", "--tenant", "acme", "--role", "admin")
    assert code == 0, out
    key = out.strip().splitlines()[0]
    key_id = key.split("_")[1]
    assert _invoke(redis_url, "tenants", "set", "acme", "--rpm", "60")[0] == 0
    assert _invoke(redis_url, "keys", "revoke", key_id)[0] == 0
    for read in (("keys", "list"), ("tenants", "show", "acme"), ("audit",)):
        assert _invoke(redis_url, *read)[0] == 0
    entries = _audit(redis_url)
    got = [(e["action"], e["outcome"], e["tenant"], e["target"], e["source"]) for e in entries]
    assert got == [
        ("keys.revoke", "ok", "acme", key_id, "cli"),
        ("tenants.set", "ok", "acme", "acme", "cli"),
        ("keys.create", "ok", "acme", key_id, "cli"),
    ]
    assert all(str(e["key_id"]).startswith("local:") for e in entries)
    assert entries[1]["detail"] == "rpm=60"
    assert all(key not in json.dumps(e) for e in entries)


def test_a_failed_command_is_audited_with_its_outcome(redis_url: str) -> None:
    code, _ = _invoke(redis_url, "keys", "create", "--tenant", "acme", "--role", "wizard")
    assert code != 0
    (entry,) = _audit(redis_url, "--action", "keys.create")
    assert (entry["outcome"], entry["tenant"]) == ("failed", "acme")


def test_models_cleanup_is_audited(redis_url: str, tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        ["models", "cleanup", "--model", "default"],
        env={"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    (entry,) = _audit(redis_url)
    assert (entry["action"], entry["outcome"], entry["target"]) == (
        "models.cleanup",
        "ok",
        "default",
    )


def test_hivemind_audit_filters_by_action_tenant_and_time(redis_url: str) -> None:
    for tenant in ("acme", "globex", "acme"):
        _invoke(redis_url, "keys", "create", "--tenant", tenant)
    _invoke(redis_url, "tenants", "set", "globex", "--max-facts", "3")
    assert len(_audit(redis_url)) == 4
    assert len(_audit(redis_url, "--action", "keys.")) == 3
    assert len(_audit(redis_url, "--action", "keys.create", "--tenant", "acme")) == 2
    assert [e["action"] for e in _audit(redis_url, "--tenant", "globex")] == [
        "tenants.set",
        "keys.create",
    ]
    assert len(_audit(redis_url, "--since", "1h")) == 4
    assert _audit(redis_url, "--since", "2999-01-01") == []
    page = _audit(redis_url, "--limit", "3")
    assert len(page) == 3


def test_since_takes_durations_dates_and_unix_times() -> None:
    assert parse_since(None) is None
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2024-01-01") == 1704067200.0
    ago = parse_since("2h")
    assert ago is not None and parse_since("1h") is not None
    assert ago < parse_since("1h")  # type: ignore[operator]


def test_bad_cursors_and_times_are_one_line_errors_not_tracebacks(redis_url: str) -> None:
    for args in (
        ("--before", "abc"),
        ("--before", "1-2-3"),
        ("--before", "0-0"),
        ("--since", "inf"),
        ("--since", "nan"),
        ("--since", "1e30"),
    ):
        result = CliRunner().invoke(app, ["audit", *args], env={"HIVEMIND_REDIS_URL": redis_url})
        assert result.exit_code in (1, 2), (args, result.output)
        assert not isinstance(result.exception, (ValueError, OverflowError)), args
        assert "Traceback" not in result.output, args
