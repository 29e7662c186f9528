"""The hosts registry: which node runs which service, per profile, and how to reach it.

``hosts.yaml`` lists nodes (name, address, labels) and places every service on exactly one node
per profile. Services find each other only through :func:`service_url`; an environment variable
``HIVEMIND_<SERVICE>_URL`` overrides the registry (tests, unusual networks).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SERVICES = ("gateway", "mcp", "embedding", "inference", "trainer", "exporter")
DEFAULT_PORTS = {
    "gateway": 8090,
    "mcp": 8091,
    "embedding": 8081,
    "inference": 8089,
    "trainer": 8092,
    "exporter": 8093,
}


GPU_SERVICES = ("inference", "trainer")


class RegistryError(ValueError):
    """hosts.yaml is missing, unreadable or inconsistent."""


class GpuSettings(BaseModel):
    """A GPU node's accelerators and how the model services use them.

    ``runtime`` picks the image flavour (``cuda`` or ``rocm`` build argument) and the devices
    passed into the containers; ``n_gpu_layers`` (-1: all), ``split_mode`` and ``tensor_split``
    go to llama.cpp (inference's ``HIVEMIND_N_GPU_LAYERS`` and the others).
    """

    model_config = ConfigDict(extra="forbid")

    runtime: str = Field(default="cuda", pattern="^(cuda|rocm)$")
    n_gpu_layers: int = Field(default=-1, ge=-1)
    split_mode: str = Field(default="layer", pattern="^(none|layer|row)$")
    main_gpu: int = Field(default=0, ge=0)
    tensor_split: list[float] | None = None

    def offload_env(self) -> dict[str, str]:
        """Inference's offload settings as environment (no quotes: unit files keep them)."""
        env = {
            "HIVEMIND_N_GPU_LAYERS": str(self.n_gpu_layers),
            "HIVEMIND_SPLIT_MODE": self.split_mode,
            "HIVEMIND_MAIN_GPU": str(self.main_gpu),
        }
        if self.tensor_split:
            env["HIVEMIND_TENSOR_SPLIT"] = json.dumps(self.tensor_split, separators=(",", ":"))
        return env


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    labels: list[str] = Field(default_factory=list)
    gpu: GpuSettings | None = None

    @model_validator(mode="after")
    def _gpu_label(self) -> Node:
        if self.gpu is not None and "gpu" not in self.labels:
            raise ValueError("a node with gpu settings must carry the gpu label")
        return self


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    port: int = Field(ge=1, le=65535)


class RedisTopology(BaseModel):
    """How Redis runs in a profile; the deployment renderer reads the details."""

    model_config = ConfigDict(extra="allow")

    mode: str = Field(default="standalone", pattern="^(standalone|cluster|sentinel)$")
    url: str | None = None


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    nodes: dict[str, Node]
    placement: dict[str, Placement]
    redis: RedisTopology = Field(default_factory=RedisTopology)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        missing = [s for s in SERVICES if s not in self.placement]
        unknown = [s for s in self.placement if s not in SERVICES]
        if missing:
            raise ValueError(f"services not placed: {', '.join(missing)}")
        if unknown:
            raise ValueError(f"unknown services placed: {', '.join(unknown)}")
        used: dict[tuple[str, int], str] = {}
        for service, where in self.placement.items():
            if where.node not in self.nodes:
                raise ValueError(f"{service} is placed on unknown node {where.node!r}")
            slot = (where.node, where.port)
            if slot in used:
                raise ValueError(
                    f"port clash on node {where.node}: {used[slot]} and {service} "
                    f"both use {where.port}"
                )
            used[slot] = service
        return self


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    profiles: dict[str, Profile]

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise RegistryError(
                f"profile {name!r} not in hosts.yaml (have: {', '.join(self.profiles)})"
            ) from None

    def placement(self, service: str, profile: str) -> Placement:
        prof = self.profile(profile)
        if service not in prof.placement:
            raise RegistryError(f"service {service!r} is not placed in profile {profile!r}")
        return prof.placement[service]

    def node_of(self, service: str, profile: str) -> tuple[str, Node]:
        where = self.placement(service, profile)
        return where.node, self.profile(profile).nodes[where.node]

    def url(self, service: str, profile: str) -> str:
        where = self.placement(service, profile)
        node = self.profile(profile).nodes[where.node]
        host = node.address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{where.port}"

    def gpu_env(self, service: str, profile: str) -> dict[str, str]:
        """Environment a GPU-using service (inference, trainer) gets on a node with ``gpu``."""
        if service not in GPU_SERVICES:
            return {}
        _name, node = self.node_of(service, profile)
        if node.gpu is None:
            return {}
        env = {"HIVEMIND_GPU_RUNTIME": node.gpu.runtime}
        if service == "inference":
            env.update(node.gpu.offload_env())
        return env

    def services_on(self, node: str, profile: str) -> list[str]:
        prof = self.profile(profile)
        if node not in prof.nodes:
            raise RegistryError(f"node {node!r} not in profile {profile!r}")
        return [s for s in SERVICES if prof.placement[s].node == node]


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Accept ``service: node`` shorthand and fill default ports."""
    profiles = data.get("profiles")
    if not isinstance(profiles, dict):
        raise RegistryError("hosts.yaml needs a 'profiles' mapping")
    for pname, prof in profiles.items():
        if not isinstance(prof, dict):
            raise RegistryError(f"profile {pname!r} must be a mapping")
        placement = prof.get("placement") or {}
        if not isinstance(placement, dict):
            raise RegistryError(f"profile {pname!r}: placement must be a mapping")
        unknown = [s for s in placement if s not in SERVICES]
        if unknown:
            raise RegistryError(f"profile {pname!r}: unknown services placed: {', '.join(unknown)}")
        for service, where in list(placement.items()):
            if isinstance(where, str):
                where = {"node": where}
            if isinstance(where, dict) and "port" not in where and service in DEFAULT_PORTS:
                where = {**where, "port": DEFAULT_PORTS[service]}
            placement[service] = where
    return data


def find_hosts_file(explicit: Path | str | None = None) -> Path:
    """The registry file: explicit path, ``$HIVEMIND_HOSTS_FILE``, ./hosts.yaml, or the repo's.

    A file named (explicitly or by the variable) must exist: falling back past a typo once
    rendered, and wrote, the default layout."""
    named = explicit or os.environ.get("HIVEMIND_HOSTS_FILE")
    if named:
        if not Path(named).is_file():
            raise RegistryError(f"hosts file {named} not found")
        return Path(named)
    candidates: list[Path] = [Path.cwd() / "hosts.yaml"]
    candidates.append(Path(__file__).resolve().parents[3] / "hosts.yaml")
    for path in candidates:
        if path.is_file():
            return path
    raise RegistryError(
        "hosts.yaml not found (set HIVEMIND_HOSTS_FILE or run from the repository root)"
    )


def parse_registry(text: str, *, source: str = "hosts.yaml") -> Registry:
    """Parse and validate registry YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{source}: top level must be a mapping")
    try:
        return Registry.model_validate(_normalise(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"{source}: {where}: {first['msg']}") from exc


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> Registry:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # unreadable: a message, not a traceback
        raise RegistryError(f"{path}: cannot be read: {exc}") from exc
    return parse_registry(text, source=path)


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate the registry (cached per file and modification time)."""
    found = find_hosts_file(path)
    return _load_cached(str(found), found.stat().st_mtime)


def service_url(
    name: str, *, profile: str | None = None, hosts_file: Path | str | None = None
) -> str:
    """Base URL of a service: ``HIVEMIND_<NAME>_URL`` if set, else from the registry."""
    override = os.environ.get(f"HIVEMIND_{name.upper()}_URL")
    if override:
        return override.rstrip("/")
    prof = profile or os.environ.get("HIVEMIND_PROFILE", "local")
    return load_registry(hosts_file).url(name, prof)
