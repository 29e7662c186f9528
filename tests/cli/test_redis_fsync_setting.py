"""The embedded Redis' fsync policy is a setting: HIVEMIND_REDIS_APPENDFSYNC."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from hivemind_cli.up_cmd import _redis_child


def _policy(argv: list[str]) -> str:
    return argv[argv.index("--appendfsync") + 1]


def test_everysec_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVEMIND_REDIS_APPENDFSYNC", raising=False)
    child = _redis_child(6390, tmp_path, tmp_path, tmp_path / "redis.conf")
    assert _policy(child.argv) == "everysec"


def test_always_is_passed_to_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVEMIND_REDIS_APPENDFSYNC", "always")
    child = _redis_child(6390, tmp_path, tmp_path, tmp_path / "redis.conf")
    assert _policy(child.argv) == "always"


def test_an_unknown_policy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVEMIND_REDIS_APPENDFSYNC", "sometimes")
    with pytest.raises(typer.BadParameter, match="everysec, always, no"):
        _redis_child(6390, tmp_path, tmp_path, tmp_path / "redis.conf")
