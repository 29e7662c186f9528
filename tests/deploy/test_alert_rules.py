"""The alert rules ship with both Prometheus configs, pass promtool and read only metrics the
services export; the gauges they need are set when /metrics is scraped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from hivemind_cli.render.monitoring import monitoring_units, scrape_config_text
from hivemind_common.hosts import Registry
from support.quadlet_check import check_alert_rules, promql_metrics

RULE = """groups:
  - name: t
    rules:
      - alert: T
        expr: {expr}
"""


def ports(url: str) -> list[int]:
    from hivemind_common.redis.url import parse_redis_url

    return [port for _, port in parse_redis_url(url).nodes]


def roots(repo: Path) -> list[Path]:
    return [repo / "libs", repo / "services"]


def test_the_shipped_rules_pass_promtool_and_read_only_exported_metrics(repo: Path) -> None:
    assert check_alert_rules(repo / "deploy/prometheus/alerts.yml", roots(repo)) == []


def test_the_rules_cover_every_failure_the_operator_must_hear_of(repo: Path) -> None:
    doc = yaml.safe_load((repo / "deploy/prometheus/alerts.yml").read_text())
    read = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            read |= promql_metrics(rule["expr"])
    for metric in (
        "up",
        "hivemind_service_ready",
        "hivemind_http_requests_total",
        "hivemind_http_request_duration_seconds_bucket",
        "hivemind_redis_primaries",
        "hivemind_redis_connected_replicas",
        "hivemind_redis_maxmemory_bytes",
        "hivemind_data_dir_free_bytes",
        "hivemind_trainer_stream_pending",
        "hivemind_trainer_cycles_total",
        "hivemind_exporter_deploys_total",
        "hivemind_inference_registry_agrees",
    ):
        assert metric in read, metric


def test_a_rule_promtool_rejects_fails_the_check(repo: Path, tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yml"
    rules.write_text(RULE.format(expr="sum(rate(hivemind_http_requests_total[5m])"))
    problems = check_alert_rules(rules, roots(repo))
    assert len(problems) == 1
    assert "promtool check rules failed" in problems[0]


def test_a_rule_reading_a_metric_no_service_exports_fails_the_check(
    repo: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "alerts.yml"
    rules.write_text(RULE.format(expr="node_filesystem_avail_bytes < 1 or hivemind_nope > 0"))
    problems = check_alert_rules(rules, roots(repo))
    assert len(problems) == 2
    assert "reads hivemind_nope" in problems[0]
    assert "reads node_filesystem_avail_bytes" in problems[1]


def test_label_names_functions_and_ranges_are_not_taken_for_metrics() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (service, le) (rate(x_bucket{service!="a b"}[5m])))'
        " > 5 and on (node) y offset 1h unless z == bool 1"
    )
    assert promql_metrics(expr) == {"x_bucket", "y", "z"}


def test_both_rendered_prometheus_configs_load_the_rules(
    repo: Path, registry: Registry, tmp_path: Path
) -> None:
    shutil.copy(repo / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    for profile, by_name in (("homelab", False), ("local", True)):
        config = tmp_path / f"{profile}.yml"
        config.write_text(scrape_config_text(registry, profile, by_name=by_name))
        assert yaml.safe_load(config.read_text())["rule_files"] == ["alerts.yml"]
        result = subprocess.run(
            ["promtool", "check", "config", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS: 13 rules found" in result.stdout


def test_the_prometheus_unit_and_compose_mount_the_rules(repo: Path, registry: Registry) -> None:
    from hivemind_cli.render.model import deploy_layout

    layout = deploy_layout(registry, "homelab")
    units = monitoring_units(registry, layout, layout.monitoring, layout.monitoring.node)
    prom = next(u for u in units if u.filename == "hivemind-prometheus.container").text()
    assert "Volume=/etc/hivemind/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro,Z" in prom
    compose = yaml.safe_load((repo / "compose.yaml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes


@pytest.mark.parametrize("topology", ["standalone", "cluster", "sentinel"])
def test_a_scrape_samples_readiness_redis_and_disk(
    topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from hivemind_common.redis import connect_redis
    from hivemind_common.scrape_metrics import disk_sampler, redis_sampler
    from hivemind_common.service_app import base_app, mark_started

    fixture = {"standalone": "redis_url", "cluster": "redis_cluster_url"}
    url = request.getfixturevalue(fixture.get(topology, "redis_sentinel_url"))
    app = base_app(service="scrapetest")
    redis = connect_redis(url)
    app.state.ready_checks["redis"] = redis.ping
    app.state.scrape_samplers += [redis_sampler(redis), disk_sampler(tmp_path)]
    with TestClient(app) as client:
        text = client.get("/metrics").text
        assert 'hivemind_service_ready{service="scrapetest"} 0.0' in text  # still starting
        mark_started(app)
        text = client.get("/metrics").text
    assert 'hivemind_service_ready{service="scrapetest"} 1.0' in text
    primaries = 3 if topology == "cluster" else 1
    assert f"hivemind_redis_primaries {primaries}.0" in text
    lines = text.splitlines()
    replicas = [ln for ln in lines if ln.startswith("hivemind_redis_connected_replicas")]
    if topology == "sentinel":  # the primary the Sentinels name, with its two replicas
        primary = request.getfixturevalue("redis_sentinel").primary().port
        assert f'hivemind_redis_connected_replicas{{node="127.0.0.1:{primary}"}} 2.0' in replicas
    else:  # the gauges are process-wide: look only at this topology's nodes
        mine = [ln for ln in replicas if any(f':{p}"' in ln for p in ports(url))]
        assert len(mine) == primaries
        assert all(ln.endswith(" 1.0") for ln in mine) or topology == "standalone"
    assert "hivemind_redis_maxmemory_bytes{" in text
    free = next(ln for ln in text.splitlines() if ln.startswith("hivemind_data_dir_free_bytes "))
    assert float(free.split()[1]) > 0


def test_a_failing_dependency_shows_as_not_ready_at_scrape() -> None:
    from hivemind_common.service_app import base_app, mark_started

    async def down() -> None:
        raise httpx.ConnectError("refused")

    app = base_app(service="scrapedown")
    app.state.ready_checks["x"] = down
    mark_started(app)
    with TestClient(app) as client:
        assert 'hivemind_service_ready{service="scrapedown"} 0.0' in client.get("/metrics").text


def test_an_alert_that_no_longer_fires_on_its_failure_fails_the_check(
    repo: Path, tmp_path: Path
) -> None:
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(repo / "deploy/prometheus" / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    assert check_alert_rules(rules, roots(repo)) == []  # the shipped cases pass here too
    text = rules.read_text().replace('up{job=~"hivemind-.*"} == 0', 'up{job=~"hivemind-.*"} == 2')
    rules.write_text(text)
    problems = check_alert_rules(rules, roots(repo))
    assert len(problems) == 1
    assert "promtool test rules failed" in problems[0] and "HivemindServiceDown" in problems[0]


def test_a_redis_that_hangs_reads_as_no_primary_not_as_its_last_healthy_values() -> None:
    """A powered-off host does not refuse, it hangs: the sample must still say 'down'."""
    import asyncio

    from hivemind_common import scrape_metrics as sm

    class Hanging:
        topology = "standalone"

        class backend:
            @staticmethod
            async def client() -> None:
                await asyncio.sleep(3600)

    sm.REDIS_PRIMARIES.set(3)
    sm.REDIS_CONNECTED_REPLICAS.labels("h:1").set(1)
    sample = sm.redis_sampler(Hanging())
    asyncio.run(sm.run_samplers([sample]))
    assert sm.REDIS_PRIMARIES._value.get() == 0
