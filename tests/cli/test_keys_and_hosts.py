"""`hivemind keys` and `hivemind hosts show` work from the shell against a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))


def _run(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HIVEMIND_REDIS_URL=redis_url)
    return subprocess.run(
        [HIVEMIND, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_keys_create_list_revoke_round_trip(redis_url: str) -> None:
    made = _run("keys", "create", "--tenant", "acme", "--role", "read", redis_url=redis_url)
    assert made.returncode == 0, made.stderr
    plaintext = made.stdout.strip()
    assert plaintext.startswith("hm_")
    key_id = plaintext.split("_")[1]

    listed = _run("keys", "list", redis_url=redis_url)
    assert listed.returncode == 0
    assert key_id in listed.stdout and "acme" in listed.stdout
    assert plaintext not in listed.stdout

    revoked = _run("keys", "revoke", key_id, redis_url=redis_url)
    assert revoked.returncode == 0
    assert "yes" in _run("keys", "list", redis_url=redis_url).stdout


def test_keys_errors_are_clear_and_nonzero(redis_url: str) -> None:
    bad_role = _run("keys", "create", "--tenant", "acme", "--role", "root", redis_url=redis_url)
    assert bad_role.returncode == 1 and "role" in bad_role.stderr
    unknown = _run("keys", "revoke", "nope", redis_url=redis_url)
    assert unknown.returncode == 1 and "nope" in unknown.stderr
    down = _run("keys", "list", redis_url="redis://127.0.0.1:1/0?retry_deadline=1")
    assert down.returncode == 1 and "redis" in down.stderr.lower()


def test_hosts_show_prints_the_placement() -> None:
    shown = _run("hosts", "show", "--profile", "homelab", redis_url="redis://unused:1/0")
    assert shown.returncode == 0, shown.stderr
    assert "aurora" in shown.stdout and "r720xd" in shown.stdout


def test_a_dead_redis_fails_fast_with_a_hint_and_no_password() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://app:sekrit-pass@127.0.0.1:{port}/0"
    for args in (("keys", "list"), ("learn", "status"), ("models", "list")):
        started = time.monotonic()
        done = _run(*args, redis_url=url)
        took = time.monotonic() - started
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "cannot reach Redis" in done.stderr, done.stderr
        assert "sekrit-pass" not in done.stderr + done.stdout
        assert took < 20, f"{args} took {took:.1f}s to give up"  # not the services' 30 s
