"""Several worker processes on one port, each with its own listening socket.

uvicorn's supervisor binds one socket and hands it to every worker. Each worker's event loop
watches it, and the one that wakes first accepts a whole burst of connections in one go: under
``wrk -c16`` one worker took all sixteen keep-alive connections while the other sat idle, so a
2-core machine served searches from one core (issue 17's profile, ``rag/context``).

Here the supervisor binds one socket per worker on the same address with ``SO_REUSEPORT``, and
each worker starts listening on its own once its app has started; the kernel spreads new
connections over the listening sockets by a hash of the connection. So:

* at start-up, connections go only to workers that are serving (none: refused, as before);
* a worker that dies is replaced on the same socket, which stays listening (the supervisor holds
  it): connections that arrive at it meanwhile wait in its queue for the replacement instead of
  being refused; the other workers' connections are not affected;
* before binding, the port is tried without ``SO_REUSEPORT``: a second instance on a port that
  is in use fails to start, as it did with one socket, instead of sharing the port unnoticed.

Health checks, signals and SIGHUP restarts are uvicorn's own (its ``Process``); SIGTTIN and
SIGTTOU (add or remove a worker) are ignored, since each worker owns one socket. Where
``SO_REUSEPORT`` is missing or refused (not Linux, some sandboxes), the workers share one socket
as before.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger(__name__)


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET  # uvicorn's rule


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound without ``SO_REUSEPORT`` (nothing listens there)."""
    with socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host:port`` (port 0: one free port for all of them); each
    worker's server listens on its own when it has started."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # the others join the port the first one got
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class PortSharingWorkers(Multiprocess):
    """uvicorn's supervisor, with worker ``i`` always serving listener ``i``."""

    def __init__(self, config: Config, socks: list[socket.socket]) -> None:
        super().__init__(config, sockets=socks)
        self._listeners = socks
        self.processes_num = len(socks)

    def _spawn(self, slot: int) -> Process:
        process = Process(self.config, [self._listeners[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung or dead: make sure, then reap it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # it never served: the app or its settings are broken, and a new one would be too
                log.error("worker [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning("worker [%s] died; starting another on its socket", process.pid)
            self.processes[slot] = self._spawn(slot)

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: each worker serves its own socket; set the worker count")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: each worker serves its own socket; set the worker count")

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced by a new one on its socket, the new one ready first."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("a new worker was not ready in time; keeping [%s]", old.pid)
                return
            old.terminate()
            old.join()
            self.processes[slot] = new


def run_workers(config: Config) -> None:
    """Serve ``config`` (an app factory's import path) with ``config.workers`` processes."""
    if not reuse_port_supported() or config.uds is not None or config.fd is not None:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    if config.port and not port_free(config.host, config.port):
        log.error("cannot listen on %s:%s: the address is in use", config.host, config.port)
        sys.exit(STARTUP_FAILURE)
    try:
        socks = listeners(config.host, config.port, config.workers)
    except OSError as exc:
        if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            log.error("cannot listen on %s:%s: %s", config.host, config.port, exc)
            sys.exit(STARTUP_FAILURE)
        log.warning("SO_REUSEPORT refused here (%s); the workers share one socket", exc)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    log.info(
        "%d workers on %s:%s, one socket each",
        len(socks),
        config.host,
        socks[0].getsockname()[1],
    )
    try:
        PortSharingWorkers(config, socks).run()
    finally:
        for sock in socks:
            sock.close()
