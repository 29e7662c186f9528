"""Child processes for ``hivemind up``: start, watch, restart with backoff, stop leaving none.

Each child runs in its own session (so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order) and asks the kernel to SIGTERM it if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child up this long has its backoff reset


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = BACKOFF_START_S
    next_start_at: float = 0.0
    stopping: bool = field(default=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            logfile.close()
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the child's process group, then SIGKILL what is left after ``timeout``."""
        self.stopping = True
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
        # whatever is left in the group (the child or anything it started) goes now
        self.signal_group(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)


class Supervisor:
    """Keeps a set of children running until asked to stop."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children

    def start_all(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> list[tuple[Child, int]]:
        """Restart children that died (with backoff); returns (child, exit code) of deaths."""
        now = time.monotonic()
        deaths: list[tuple[Child, int]] = []
        for child in self.children:
            if child.stopping or child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                if now - child.started_at > STABLE_AFTER_S:
                    child.backoff_s = BACKOFF_START_S
                continue
            if child.next_start_at == 0.0:
                deaths.append((child, code))
                child.next_start_at = now + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
            elif now >= child.next_start_at:
                child.restarts += 1
                child.next_start_at = 0.0
                child.start()
        return deaths

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop children in reverse start order."""
        for child in reversed(self.children):
            child.stopping = True
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            child.stop(timeout=max(0.1, deadline - time.monotonic()))
