"""`hivemind up` as a user runs it: all ready, a dead service restarted, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis as sync_redis
from redis import exceptions as redis_exceptions

from hivemind_common.hosts import SERVICES
from support.waiting import free_port, wait_until

pytestmark = pytest.mark.slow

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))


def _hosts_file(tmp: Path, ports: dict[str, int]) -> Path:
    lines = [
        "profiles:",
        "  local:",
        "    nodes:",
        "      me: {address: 127.0.0.1}",
        "    placement:",
    ]
    lines += [f"      {s}: {{node: me, port: {p}}}" for s, p in ports.items()]
    path = tmp / "hosts.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Up:
    def __init__(self, proc: subprocess.Popen[str], ports: dict[str, int], data: Path) -> None:
        self.proc = proc
        self.ports = ports
        self.data = data
        self.redis_port = 0
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def text(self) -> str:
        return "".join(self.output)


@pytest.fixture
def hivemind_up(tmp_path: Path) -> Iterator[Up]:
    ports = {s: free_port() for s in SERVICES}
    redis_port = free_port()
    data = tmp_path / "var"
    env = dict(os.environ)
    env.update(
        HIVEMIND_DATA_DIR=str(data),
        HIVEMIND_HOSTS_FILE=str(_hosts_file(tmp_path, ports)),
        HIVEMIND_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        HIVEMIND_PROFILE="local",
    )
    for s in SERVICES:
        env.pop(f"HIVEMIND_{s.upper()}_URL", None)
    proc = subprocess.Popen(
        [HIVEMIND, "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    up = Up(proc, ports, data)
    up.redis_port = redis_port
    try:
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_up_starts_everything_and_ctrl_c_leaves_no_process(hivemind_up: Up) -> None:
    wait_until(
        lambda: "all services ready" in hivemind_up.text() or hivemind_up.proc.poll() is not None,
        timeout=240,
        what="hivemind up to report readiness",
    )
    assert hivemind_up.proc.poll() is None, hivemind_up.text()
    for service, port in hivemind_up.ports.items():
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, (service, ready.text)
    key_file = hivemind_up.data / "secrets" / "admin.key"
    assert str(key_file) in hivemind_up.text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (hivemind_up.data / "secrets" / "internal.token").stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() not in hivemind_up.text()
    # the embedded Redis has a generated password (0600) that every service uses
    password_file = hivemind_up.data / "secrets" / "redis.password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(redis_exceptions.AuthenticationError):
        sync_redis.Redis(port=hivemind_up.redis_port, socket_timeout=5).ping()
    if shutil.which("redis-cli"):
        ping = ["redis-cli", "-p", str(hivemind_up.redis_port), "ping"]
        answer = subprocess.run(ping, capture_output=True, text=True, timeout=10, check=False)
        assert "NOAUTH" in answer.stdout + answer.stderr
    # the web console answers on the real gateway process, its templates and assets installed
    gateway = f"http://127.0.0.1:{hivemind_up.ports['gateway']}"
    assert f"{gateway}/console" in hivemind_up.text()
    with httpx.Client(base_url=gateway, timeout=10) as browser:
        signed = browser.post("/console/signin", data={"api_key": key_file.read_text().strip()})
        assert signed.status_code == 303, signed.text
        for _ in range(2):
            assert browser.get("/console/overview").status_code == 200
            assert browser.get("/v1/facts").status_code == 200
        assert browser.get("/console/static/htmx.min.js").status_code == 200
    secrets = [
        password_file.read_text().strip(),
        key_file.read_text().strip(),
        (hivemind_up.data / "secrets" / "internal.token").read_text().strip(),
    ]
    shown = hivemind_up.text() + "".join(
        p.read_text(errors="replace") for p in (hivemind_up.data / "logs").glob("*.log")
    )
    assert not [s for s in secrets if s in shown]

    children = psutil.Process(hivemind_up.proc.pid).children(recursive=True)
    assert len(children) >= 7  # redis + six services

    hivemind_up.proc.send_signal(signal.SIGINT)
    assert hivemind_up.proc.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.pid for p in alive]


def test_a_service_that_dies_is_restarted(hivemind_up: Up) -> None:
    wait_until(
        lambda: "all services ready" in hivemind_up.text() or hivemind_up.proc.poll() is not None,
        timeout=240,
        what="hivemind up to report readiness",
    )
    port = hivemind_up.ports["trainer"]
    children = psutil.Process(hivemind_up.proc.pid).children(recursive=True)
    trainer = next(p for p in children if "hivemind_trainer" in " ".join(p.cmdline()))
    trainer.kill()
    trainer.wait(timeout=10)
    wait_until(lambda: "trainer exited" in hivemind_up.text(), timeout=30, what="death noticed")

    def restarted() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(restarted, timeout=90, what="trainer restarted")
