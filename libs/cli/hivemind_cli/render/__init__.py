"""Render a node's deployment from the hosts registry: Quadlet units and a Prometheus config.

``render_node(registry, profile=..., node=...)`` returns ``{file name: text}``;
:func:`write_node` writes it to a directory and removes units it no longer renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hivemind_cli.render.backup_units import SYSTEMD_SUFFIXES, backup_units
from hivemind_cli.render.model import DeployLayout, deploy_layout
from hivemind_cli.render.monitoring import monitoring_units, scrape_config, scrape_config_text
from hivemind_cli.render.redis_units import cluster_units, sentinel_units
from hivemind_cli.render.service_units import service_set
from hivemind_cli.render.unit_file import Unit
from hivemind_common.hosts import Registry, RegistryError

__all__ = [
    "UNIT_SUFFIXES",
    "DeployLayout",
    "RedisMode",
    "deploy_layout",
    "redis_mode",
    "render_node",
    "scrape_config",
    "scrape_config_text",
    "write_node",
]

RedisMode = Literal["cluster", "sentinel", "none"]
UNIT_SUFFIXES = (".container", ".network", ".volume", ".pod", ".kube", ".image")


def redis_mode(registry: Registry, profile: str) -> RedisMode:
    """The Redis topology a profile runs by default."""
    mode = registry.profile(profile).redis.mode
    return mode if mode in ("cluster", "sentinel") else "none"  # type: ignore[return-value]


def render_units(
    registry: Registry, *, profile: str, node: str, redis: RedisMode | None = None
) -> list[Unit]:
    """Every unit of ``node``: network, volumes, services, Redis, monitoring."""
    prof = registry.profile(profile)
    if node not in prof.nodes:
        raise RegistryError(
            f"node {node!r} not in profile {profile!r} (have: {', '.join(prof.nodes)})"
        )
    layout = deploy_layout(registry, profile)
    mode = redis or redis_mode(registry, profile)
    redis_units: list[Unit] = []
    if mode == "cluster":
        if layout.cluster is None:
            raise RegistryError(f"profile {profile}: redis.cluster is not described")
        redis_units = cluster_units(registry, layout, layout.cluster, node)
    elif mode == "sentinel":
        if layout.sentinel is None:
            raise RegistryError(f"profile {profile}: redis.sentinel is not described")
        redis_units = sentinel_units(registry, layout, layout.sentinel, node)
    after = [
        u.filename.replace(".container", ".service")
        for u in redis_units
        if u.filename.startswith("hivemind-redis-") and u.filename.endswith(".container")
    ]
    units = service_set(registry, layout, node, after)
    units += redis_units
    if layout.monitoring is not None:
        units += monitoring_units(registry, layout, layout.monitoring, node)
    units += backup_units(registry, profile, node)
    return units


def render_node(
    registry: Registry, *, profile: str, node: str, redis: RedisMode | None = None
) -> dict[str, str]:
    """``{file name: text}`` for one node; names are unique and sorted."""
    files: dict[str, str] = {}
    for unit in render_units(registry, profile=profile, node=node, redis=redis):
        if unit.filename in files:
            raise RegistryError(f"two units render to {unit.filename}")
        files[unit.filename] = unit.text()
    return dict(sorted(files.items()))


def _ours(path: Path) -> bool:
    """Whether ``path`` is a unit an earlier render wrote: a ``hivemind-`` name and our header.
    ``--out`` is often /etc/containers/systemd, which holds the machine's other units too."""
    if not path.name.startswith("hivemind-") or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith("# Rendered by `hivemind hosts render")
    except OSError:
        return False


def write_node(files: dict[str, str], out: Path) -> list[Path]:
    """Write rendered files into ``out``; stale units from an earlier render are removed (only
    ours: every other file there, another program's units included, is left alone)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        rendered = old.suffix in UNIT_SUFFIXES or old.suffix in SYSTEMD_SUFFIXES
        if rendered and old.name not in files and _ours(old):
            old.unlink()
    written = []
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written
