"""Start real redis-server processes on free loopback ports for tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from support.waiting import free_port, wait_until


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(path).exists():
        raise RuntimeError("redis-server is not installed; run `make install`")
    return path


@dataclass
class RedisProcess:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(directory: Path, *args: str, port: int | None = None) -> RedisProcess:
    """Start one redis-server (no persistence unless args ask) and wait until it answers."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisProcess(port=port, directory=directory, process=proc, extra=list(args))
    wait_until(lambda: server.client().ping(), timeout=10, what=f"redis on {port}")
    return server


@contextmanager
def standalone_redis(directory: Path) -> Iterator[RedisProcess]:
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()
