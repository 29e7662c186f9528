"""Fixtures of the deployment tests: the repository, the registry, the quadlet binary.

Tests marked ``containers`` build and run images (minutes); they run under
``make test-containers`` (HIVEMIND_CONTAINER_TESTS=1) and are deselected from a plain ``pytest``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hivemind_common.hosts import Registry, load_registry

REPO = Path(__file__).resolve().parents[2]
QUADLET = REPO / ".tools/podman-trixie/usr/libexec/podman/quadlet"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("HIVEMIND_CONTAINER_TESTS") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("containers") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(REPO / "hosts.yaml")


@pytest.fixture(scope="session")
def quadlet() -> Path:
    """The trixie quadlet generator that scripts/setup-containers.sh unpacks."""
    if not QUADLET.is_file():
        pytest.fail(
            f"{QUADLET} is missing: run scripts/setup-containers.sh (make quadlet-check does)"
        )
    return QUADLET
