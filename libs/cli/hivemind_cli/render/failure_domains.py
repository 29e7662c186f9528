"""Which single node a profile's Redis cannot lose.

The rule, for the topology a profile runs: losing any one node must leave a majority of the
Cluster's primaries (a failover needs the surviving primaries' votes) and of the Sentinels (a
failover needs a majority of them to elect a leader, and at least ``quorum`` to agree the primary
is down); and every primary on the lost node needs a replica elsewhere to take over its data.
A layout that breaks the rule is a single point of failure: ``hivemind hosts render`` and
``hosts show`` say so, and rendering refuses it unless ``--allow-single-point`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hivemind_cli.render.model import ClusterLayout, DeployLayout, SentinelLayout

Topology = Literal["cluster", "sentinel"]


@dataclass(frozen=True)
class SinglePoint:
    """Losing ``node`` stops Redis writes in ``topology``, for ``reason``."""

    node: str
    topology: Topology
    reason: str

    def __str__(self) -> str:
        return f"losing {self.node} stops Redis ({self.topology}): {self.reason}"


def _cluster(layout: ClusterLayout, nodes: list[str]) -> list[SinglePoint]:
    primaries = [n for n in layout.nodes if n.role == "primary"]
    out = []
    for lost in nodes:
        left = [p for p in primaries if p.node != lost]
        reasons = []
        if len(left) <= len(primaries) // 2:
            reasons.append(
                f"{len(left)} of {len(primaries)} primaries left, no majority to fail over"
            )
        for primary in primaries:
            if primary.node != lost:
                continue
            if not any(r.of == primary.name and r.node != lost for r in layout.nodes):
                reasons.append(f"primary {primary.name} has no replica on another node")
        if reasons:
            out.append(SinglePoint(lost, "cluster", "; ".join(reasons)))
    return out


def _sentinel(layout: SentinelLayout, nodes: list[str]) -> list[SinglePoint]:
    total = len(layout.sentinels)
    out = []
    for lost in nodes:
        left = sum(1 for s in layout.sentinels if s.node != lost)
        reasons = []
        if left <= total // 2:
            reasons.append(f"{left} of {total} Sentinels left, no majority to elect a leader")
        elif left < layout.quorum:
            reasons.append(f"{left} Sentinels left, below the quorum of {layout.quorum}")
        if layout.primary.node == lost and not any(
            n.role == "replica" and n.node != lost for n in layout.nodes
        ):
            reasons.append(f"primary {layout.primary.name} has no replica on another node")
        if reasons:
            out.append(SinglePoint(lost, "sentinel", "; ".join(reasons)))
    return out


def single_points(
    layout: DeployLayout, nodes: list[str], topology: Topology | None = None
) -> list[SinglePoint]:
    """Every node whose loss stops Redis, for ``topology`` (default: each one the profile has)."""
    out: list[SinglePoint] = []
    if layout.cluster and topology in (None, "cluster"):
        out += _cluster(layout.cluster, nodes)
    if layout.sentinel and topology in (None, "sentinel"):
        out += _sentinel(layout.sentinel, nodes)
    return out
