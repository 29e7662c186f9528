"""A typed view of what the renderer reads from a hosts.yaml profile.

``hosts.yaml`` keeps the deployment details in free-form places (``redis`` allows extra keys,
``extra`` is a mapping); this module validates them once so the unit writers can trust them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hivemind_common.hosts import Profile, Registry, RegistryError


class RedisNode(BaseModel):
    """One redis-server process: a Cluster node, or a primary/replica under Sentinel."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    node: str
    port: int = Field(ge=1, le=65535)
    role: Literal["primary", "replica"]
    of: str | None = None


class SentinelNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    port: int = Field(ge=1, le=65535)


class ClusterLayout(BaseModel):
    """Redis Cluster: primaries and their replicas, placed on nodes."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[RedisNode]
    maxmemory: str = "1gb"

    @model_validator(mode="after")
    def _check(self) -> ClusterLayout:
        names = {n.name: n for n in self.nodes}
        if len(names) != len(self.nodes):
            raise ValueError("redis cluster node names must be unique")
        primaries = [n for n in self.nodes if n.role == "primary"]
        if len(primaries) < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        for n in self.nodes:
            if n.role == "replica":
                if n.of not in names or names[n.of].role != "primary":
                    raise ValueError(f"replica {n.name} must name a primary in 'of'")
            elif n.of is not None:
                raise ValueError(f"primary {n.name} cannot have 'of'")
        return self


class SentinelLayout(BaseModel):
    """A primary with replicas, watched by Sentinels that promote a replica on failure."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(default="hivemind", pattern=r"^[A-Za-z0-9_-]+$")
    quorum: int = Field(default=2, ge=1)
    nodes: list[RedisNode]
    sentinels: list[SentinelNode]
    maxmemory: str = "1gb"

    @model_validator(mode="after")
    def _check(self) -> SentinelLayout:
        primaries = [n for n in self.nodes if n.role == "primary"]
        if len(primaries) != 1:
            raise ValueError("the sentinel layout needs exactly one primary")
        if len(self.sentinels) < 3:
            raise ValueError("run at least 3 sentinels")
        if self.quorum > len(self.sentinels):
            raise ValueError("quorum is larger than the number of sentinels")
        return self

    @property
    def primary(self) -> RedisNode:
        return next(n for n in self.nodes if n.role == "primary")


class Monitoring(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    grafana_port: int = Field(default=3000, ge=1, le=65535)


class DeployLayout(BaseModel):
    """Everything the renderer needs for one profile."""

    profile: str
    images_prefix: str = "localhost/hivemind-"
    image_tag: str = "latest"
    cluster: ClusterLayout | None = None
    sentinel: SentinelLayout | None = None
    monitoring: Monitoring | None = None

    def image(self, service: str) -> str:
        return f"{self.images_prefix}{service}:{self.image_tag}"


def deploy_layout(registry: Registry, profile_name: str) -> DeployLayout:
    """Validate the deployment details of a profile; RegistryError says what is wrong."""
    profile: Profile = registry.profile(profile_name)
    extra_redis = profile.redis.model_extra or {}
    try:
        layout = DeployLayout(
            profile=profile_name,
            images_prefix=profile.extra.get("image_prefix", "localhost/hivemind-"),
            image_tag=profile.extra.get("image_tag", "latest"),
            cluster=extra_redis.get("cluster"),
            sentinel=extra_redis.get("sentinel"),
            monitoring=profile.extra.get("monitoring"),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"profile {profile_name}: {where}: {first['msg']}") from exc
    placed = [n.node for n in (layout.cluster.nodes if layout.cluster else [])]
    if layout.sentinel:
        placed += [n.node for n in layout.sentinel.nodes]
        placed += [s.node for s in layout.sentinel.sentinels]
    if layout.monitoring:
        placed.append(layout.monitoring.node)
    unknown = sorted({n for n in placed if n not in profile.nodes})
    if unknown:
        raise RegistryError(f"profile {profile_name}: unknown node(s) {', '.join(unknown)}")
    if layout.cluster and len(profile.nodes) > 1:
        by_name = {n.name: n for n in layout.cluster.nodes}
        for rnode in layout.cluster.nodes:
            if rnode.of and by_name[rnode.of].node == rnode.node:
                raise RegistryError(
                    f"profile {profile_name}: redis replica {rnode.name} shares node "
                    f"{rnode.node} with its primary {rnode.of}; losing that node loses both"
                )
    return layout
