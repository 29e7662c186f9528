"""The six service images share one base definition; each Containerfile adds only its own
labels, port, volumes and command (no repeated user, install or healthcheck blocks)."""

from __future__ import annotations

import re
from pathlib import Path

from hivemind_common.hosts import DEFAULT_PORTS, SERVICES

SHARED = ("useradd", "pip install", "HEALTHCHECK", "hivemind-healthcheck", "venv", "USER ")


def instructions(path: Path) -> list[str]:
    """The Containerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_every_service_image_builds_on_the_shared_base_and_adds_only_its_own_settings(
    repo: Path,
) -> None:
    for service in SERVICES:
        steps = instructions(repo / "services" / service / "Containerfile")
        assert steps[:2] == [
            "ARG SERVICE_BASE=localhost/hivemind-service-base:latest",
            "FROM ${SERVICE_BASE}",
        ], service
        assert not [s for s in steps if s.split()[0] in ("RUN", "COPY", "ADD", "USER")], service
        assert not [s for s in steps for word in SHARED if word in s], service
        port = DEFAULT_PORTS[service]
        assert f"ENV HIVEMIND_PORT={port}" in steps and f"EXPOSE {port}" in steps, service
        assert steps[-1] == f'ENTRYPOINT ["python", "-m", "hivemind_{service}"]'


def test_the_shared_base_installs_each_service_offline_and_drops_to_its_user(repo: Path) -> None:
    steps = instructions(repo / "deploy/images/service-base.Containerfile")
    onbuild = [s.removeprefix("ONBUILD ") for s in steps if s.startswith("ONBUILD ")]
    installs = [s for s in onbuild if "pip install" in s]
    assert len(installs) == 2 and all("--no-index" in s for s in installs)
    assert onbuild[-1] == "USER hivemind"
    assert any(s.startswith("HEALTHCHECK") for s in steps)
