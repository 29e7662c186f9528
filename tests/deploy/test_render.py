"""Rendering the homelab profile: placement, URLs, Redis layout, and no secret in any unit."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from hivemind_cli.render import render_node, write_node
from hivemind_cli.render.failure_domains import single_points
from hivemind_cli.render.model import deploy_layout
from hivemind_common.hosts import SERVICES, Registry, RegistryError, parse_registry
from support.quadlet_check import check_in_sync

PROFILE = "homelab"


def parse(text: str) -> configparser.RawConfigParser:
    """A unit file as sections of (possibly repeated) keys."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def values(text: str, section: str, key: str) -> list[str]:
    prefix = f"{key}="
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.startswith(prefix):
            out.append(line[len(prefix) :])
    return out


def env_of(text: str) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values(text, "Container", "Environment"))


def test_homelab_puts_embedding_on_r720xd_and_model_work_on_aurora(registry: Registry) -> None:
    aurora = render_node(registry, profile=PROFILE, node="aurora")
    r720xd = render_node(registry, profile=PROFILE, node="r720xd")
    for service in ("inference", "trainer", "exporter"):
        assert f"hivemind-{service}.container" in aurora
        assert f"hivemind-{service}.container" not in r720xd
    for service in ("embedding", "gateway", "mcp"):
        assert f"hivemind-{service}.container" in r720xd
        assert f"hivemind-{service}.container" not in aurora
    for files in (aurora, r720xd):
        assert "hivemind.network" in files
        assert "hivemind-data.volume" in files


def test_the_network_unit_keeps_dns_on_and_says_what_the_node_needs_for_it(
    registry: Registry,
) -> None:
    for node in ("aurora", "r720xd"):
        text = render_node(registry, profile=PROFILE, node=node)["hivemind.network"]
        assert values(text, "Network", "DisableDNS") == ["false"]
        comment = " ".join(line for line in text.splitlines() if line.startswith("#"))
        for needed in ("aardvark-dns", "golang-github-containernetworking-plugin-dnsname"):
            assert needed in comment, needed


def test_every_service_url_points_at_the_node_that_runs_the_service(registry: Registry) -> None:
    checked = 0
    for node in ("aurora", "r720xd"):
        files = render_node(registry, profile=PROFILE, node=node)
        for name, text in files.items():
            service = name.removeprefix("hivemind-").removesuffix(".container")
            if service not in SERVICES:
                continue
            for key, url in env_of(text).items():
                if not (key.endswith("_URL") and key != "HIVEMIND_REDIS_URL"):
                    continue
                peer = key.removeprefix("HIVEMIND_").removesuffix("_URL").lower()
                assert peer in SERVICES
                where = registry.placement(peer, PROFILE)
                if where.node == node:
                    assert url == f"http://hivemind-{peer}:{where.port}"
                else:
                    address = registry.profile(PROFILE).nodes[where.node].address
                    assert url == f"http://{address}:{where.port}"
                checked += 1
    assert checked == 6 * 5  # every service knows every other one


def test_services_listen_on_their_own_node_address_and_port(registry: Registry) -> None:
    files = render_node(registry, profile=PROFILE, node="aurora")
    text = files["hivemind-inference.container"]
    assert values(text, "Container", "PublishPort") == ["192.168.1.50:8089:8089"]
    assert env_of(text)["HIVEMIND_PORT"] == "8089"
    assert env_of(text)["HIVEMIND_NODE"] == "aurora"
    assert values(text, "Container", "Network") == ["hivemind.network"]


def test_no_secret_appears_in_any_rendered_unit(
    registry: Registry, repo: Path, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    subprocess.run(
        ["bash", str(repo / "deploy/redis/make-secrets.sh"), "generate", str(secrets_dir)],
        check=True, capture_output=True, timeout=60, cwd=repo,
    )  # fmt: skip
    secret_values = [
        p.read_text().strip()
        for p in secrets_dir.iterdir()
        if p.name.endswith((".password", ".token"))
    ]
    assert len(secret_values) >= 5 and all(len(v) >= 32 for v in secret_values)
    for mode in ("cluster", "sentinel"):
        for node in ("aurora", "r720xd"):
            for name, text in render_node(registry, profile=PROFILE, node=node, redis=mode).items():
                for value in secret_values:
                    assert value not in text, f"{name} holds a secret"
                lowered = text.lower()
                for word in ("requirepass", "masterauth", "auth-pass", "password="):
                    assert word not in lowered, f"{name} mentions {word}"
    gateway = render_node(registry, profile=PROFILE, node="r720xd")["hivemind-gateway.container"]
    assert values(gateway, "Container", "Secret") == [
        "hivemind-internal-token,type=env,target=HIVEMIND_INTERNAL_TOKEN",
        "hivemind-redis-url,type=env,target=HIVEMIND_REDIS_URL",
    ]
    url = (secrets_dir / "redis.url").read_text().strip()
    assert url.startswith("redis+cluster://hivemind:") and "192.168.1.60:7001" in url


def test_redis_cluster_spreads_replicas_away_from_their_primaries(registry: Registry) -> None:
    layout = deploy_layout(registry, PROFILE)
    assert layout.cluster is not None
    by_name = {n.name: n for n in layout.cluster.nodes}
    primaries = [n for n in layout.cluster.nodes if n.role == "primary"]
    replicas = [n for n in layout.cluster.nodes if n.role == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    assert {r.of for r in replicas} == {p.name for p in primaries}
    for replica in replicas:
        assert by_name[replica.of].node != replica.node  # type: ignore[index]
    rendered = 0
    for node, address in (("aurora", "192.168.1.50"), ("r720xd", "192.168.1.60")):
        for name, text in render_node(registry, profile=PROFILE, node=node).items():
            if not name.startswith("hivemind-redis-") or not name.endswith(".container"):
                continue
            exec_line = values(text, "Container", "Exec")[0]
            port = by_name[name.removeprefix("hivemind-redis-").removesuffix(".container")].port
            for flag in (
                f"--cluster-announce-ip {address}",
                "--cluster-enabled yes",
                "--maxmemory-policy noeviction",
                "--appendonly yes",
                "--protected-mode yes",
            ):
                assert flag in exec_line, (name, flag)
            assert "127.0.0.1" not in text
            assert f"{address}:{port}:{port}" in values(text, "Container", "PublishPort")
            assert f"{address}:{port + 10000}:{port + 10000}" in values(
                text, "Container", "PublishPort"
            )
            assert any(
                s.startswith("hivemind-redis-auth,") for s in values(text, "Container", "Secret")
            )
            rendered += 1
    assert rendered == 6


def test_a_replica_on_its_primarys_node_is_refused(registry: Registry, repo: Path) -> None:
    text = (repo / "hosts.yaml").read_text()
    broken = text.replace(
        "{name: c4, node: aurora, port: 7004, role: replica, of: c1}",
        "{name: c4, node: r720xd, port: 7004, role: replica, of: c1}",
    )
    assert broken != text
    with pytest.raises(RegistryError, match="c4 shares node r720xd with its primary c1"):
        deploy_layout(parse_registry(broken), PROFILE)


def test_sentinel_alternative_has_a_primary_two_replicas_and_three_sentinels(
    registry: Registry,
) -> None:
    names: list[str] = []
    for node in ("aurora", "r720xd"):
        files = render_node(registry, profile=PROFILE, node=node, redis="sentinel")
        names += [n for n in files if n.endswith(".container")]
        assert not any("redis-c" in n for n in files)
        for name, text in files.items():
            if name.startswith("hivemind-sentinel-") and name.endswith(".container"):
                script = values(text, "Container", "Exec")[0]
                assert "sentinel monitor hivemind 192.168.1.60 6379 2" in script
                assert (
                    f"sentinel announce-ip {registry.profile(PROFILE).nodes[node].address}"
                    in script
                )
            if name.startswith("hivemind-redis-s-replica") and name.endswith(".container"):
                assert "--replicaof 192.168.1.60 6379" in values(text, "Container", "Exec")[0]
    assert sorted(n for n in names if "sentinel-" in n) == [
        "hivemind-sentinel-26379.container",
        "hivemind-sentinel-26379.container",
        "hivemind-sentinel-26380.container",
    ]
    assert sorted(n for n in names if "redis-s-" in n) == [
        "hivemind-redis-s-primary.container",
        "hivemind-redis-s-replica1.container",
        "hivemind-redis-s-replica2.container",
    ]


def test_monitoring_runs_on_its_node_only(registry: Registry) -> None:
    r720xd = render_node(registry, profile=PROFILE, node="r720xd")
    aurora = render_node(registry, profile=PROFILE, node="aurora")
    assert "hivemind-prometheus.container" in r720xd and "hivemind-grafana.container" in r720xd
    assert not any("prometheus" in n or "grafana" in n for n in aurora)
    grafana = r720xd["hivemind-grafana.container"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana-admin" in values(
        grafana, "Container", "Environment"
    )


def test_the_committed_quadlet_folder_matches_a_fresh_render(repo: Path) -> None:
    assert check_in_sync(repo) == []


def hivemind(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / ".venv/bin/hivemind"), *args],
        capture_output=True, text=True, timeout=60, cwd=repo,
    )  # fmt: skip


def test_render_command_writes_units_and_drops_stale_ones(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "units"
    out.mkdir()
    header = "# Rendered by `hivemind hosts render --profile homelab --node aurora`.\n"
    (out / "hivemind-old.container").write_text(header + "[Container]\nImage=x\n")
    (out / "notes.txt").write_text("kept")
    # the machine's other units (--out is often /etc/containers/systemd) were deleted too
    (out / "jellyfin.container").write_text("[Container]\nImage=jellyfin\n")
    (out / "media.network").write_text("[Network]\n")
    (out / "hivemind-mine.container").write_text("[Container]\nImage=hand-written\n")
    result = hivemind(
        repo, "hosts", "render", "--node", "aurora", "--out", str(out), "--allow-single-point"
    )
    assert result.returncode == 0, result.stderr
    assert "warning: losing r720xd stops Redis (cluster)" in result.stderr
    assert (out / "hivemind-inference.container").is_file()
    assert not (out / "hivemind-old.container").exists()
    assert (out / "notes.txt").read_text() == "kept"
    for other in ("jellyfin.container", "media.network", "hivemind-mine.container"):
        assert (out / other).is_file(), other
    parse((out / "hivemind-inference.container").read_text())  # well-formed ini


def test_render_command_names_an_unknown_node(repo: Path, tmp_path: Path) -> None:
    result = hivemind(repo, "hosts", "render", "--node", "nope", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "node 'nope' not in profile 'homelab'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_node_leaves_unchanged_files_untouched(registry: Registry, tmp_path: Path) -> None:
    files = render_node(registry, profile=PROFILE, node="aurora")
    write_node(files, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    write_node(files, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


# --- failure domains: what losing one node does to Redis -----------------------------------------

OLD_CLUSTER = """          - {name: c1, node: aurora, port: 7001, role: primary}
          - {name: c2, node: r720xd, port: 7002, role: primary}
          - {name: c3, node: aurora, port: 7003, role: primary}
          - {name: c4, node: r720xd, port: 7004, role: replica, of: c1}
          - {name: c5, node: aurora, port: 7005, role: replica, of: c2}
          - {name: c6, node: r720xd, port: 7006, role: replica, of: c3}"""

PI_NODE = """      pi:
        address: 192.168.1.70
        labels: [arbiter]
"""


def three_node_registry(text: str) -> Registry:
    """The shipped homelab plus a small third node holding c3 and one Sentinel."""
    text = text.replace(
        "    placement:\n      gateway: r720xd",
        PI_NODE + "    placement:\n      gateway: r720xd",
        1,
    )
    text = text.replace("{name: c3, node: r720xd, port: 7003", "{name: c3, node: pi, port: 7003")
    text = text.replace("- {node: r720xd, port: 26380}", "- {node: pi, port: 26379}")
    return parse_registry(text)


def test_the_old_two_node_layout_is_a_single_point_on_the_gpu_box(repo: Path) -> None:
    """The layout shipped before put 2 of 3 Cluster primaries on aurora: losing the GPU box
    stopped writes. The check names it."""
    text = (repo / "hosts.yaml").read_text()
    current = "\n".join(
        line for line in text.splitlines() if "{name: c" in line and "role:" in line
    )
    old = parse_registry(text.replace(current, OLD_CLUSTER))
    points = single_points(deploy_layout(old, PROFILE), ["aurora", "r720xd"], "cluster")
    assert [(p.node, p.topology) for p in points] == [("aurora", "cluster")]
    assert "1 of 3 primaries left" in points[0].reason


def test_the_shipped_homelab_survives_losing_the_gpu_box_and_says_what_it_cannot(
    registry: Registry,
) -> None:
    layout = deploy_layout(registry, PROFILE)
    points = single_points(layout, ["aurora", "r720xd"])
    assert {(p.node, p.topology) for p in points} == {("r720xd", "cluster"), ("r720xd", "sentinel")}


def test_a_third_small_node_leaves_no_single_point(repo: Path) -> None:
    registry = three_node_registry((repo / "hosts.yaml").read_text())
    layout = deploy_layout(registry, PROFILE)
    assert single_points(layout, list(registry.profile(PROFILE).nodes)) == []


def test_a_lost_primary_without_a_replica_elsewhere_is_named(repo: Path) -> None:
    registry = three_node_registry((repo / "hosts.yaml").read_text())
    layout = deploy_layout(registry, PROFILE)
    assert layout.cluster is not None
    c6 = next(n for n in layout.cluster.nodes if n.name == "c6")
    c6.node = "pi"  # c3's only replica now shares the pi with it
    points = single_points(layout, list(registry.profile(PROFILE).nodes), "cluster")
    assert [p.node for p in points] == ["pi"]
    assert "primary c3 has no replica on another node" in points[0].reason


def test_render_refuses_a_single_point_unless_allowed(repo: Path, tmp_path: Path) -> None:
    result = hivemind(repo, "hosts", "render", "--node", "r720xd", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "error: losing r720xd stops Redis (cluster): 1 of 3 primaries left" in result.stderr
    assert "--allow-single-point" in result.stderr
    assert list(tmp_path.iterdir()) == []
    shown = hivemind(repo, "hosts", "show", "--profile", PROFILE)
    assert shown.returncode == 0, shown.stderr
    assert "losing r720xd stops Redis" in " ".join(shown.stdout.split())
