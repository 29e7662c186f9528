"""The command line answers bad settings and a refusing Redis with one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.exceptions
import typer

from hivemind_cli.redis_cli import exit_on_failure

HIVEMIND = Path(sys.executable).parent / "hivemind"


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "HIVEMIND_LOG_JSON": "maybe", "HIVEMIND_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(HIVEMIND), "keys", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "log_json" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (redis.exceptions.AuthenticationError("invalid username-password pair"), "password"),
        (redis.exceptions.ResponseError("WRONGTYPE"), "WRONGTYPE"),
    ],
)
def test_a_redis_refusal_is_a_message_not_a_traceback(
    error: Exception, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as ended, exit_on_failure("redis://127.0.0.1:6379/0"):
        raise error
    assert ended.value.exit_code == 1
    assert said in capsys.readouterr().err


def test_secrets_are_written_whole_into_a_private_folder(tmp_path: Path) -> None:
    from hivemind_cli.up_cmd import _write_secret

    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)  # made earlier, too open: narrowed
    _write_secret(folder / "internal.token", "first")
    _write_secret(folder / "internal.token", "second")
    assert (folder / "internal.token").read_text() == "second\n"
    assert (folder / "internal.token").stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in folder.iterdir()] == ["internal.token"]  # no temporary file left


def test_up_refuses_a_service_name_it_does_not_know(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    result = CliRunner().invoke(
        app, ["up", "--only", "gatway"], env={"HIVEMIND_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2 and "gatway" in result.output
