"""Prometheus (scrape config generated from the registry) and Grafana (provisioned from files)."""

from __future__ import annotations

from typing import Any

import yaml

from hivemind_cli.render.model import DeployLayout, Monitoring
from hivemind_cli.render.service_units import NETWORK
from hivemind_cli.render.unit_file import Unit, header
from hivemind_common.hosts import SERVICES, Registry

PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v2.53.1"
GRAFANA_IMAGE = "docker.io/grafana/grafana:11.1.4"
# Where docs/deploy.md tells the operator to copy deploy/ on the monitoring node.
CONFIG_ROOT = "/etc/hivemind"
SECRET_GRAFANA_ADMIN = "hivemind-grafana-admin"
# deploy/prometheus/alerts.yml, mounted beside prometheus.yml in the container
ALERT_RULES = "alerts.yml"


def scrape_config(
    registry: Registry, profile: str, *, interval: str = "15s", by_name: bool = False
) -> dict[str, Any]:
    """prometheus.yml: one job per service at the address the registry gives it.

    ``by_name`` targets ``<service>:<port>`` instead (compose, where Prometheus shares the
    services' network and the registry's loopback addresses mean nothing).
    """
    jobs = []
    for service in SERVICES:
        node, _ = registry.node_of(service, profile)
        if by_name:
            target = f"{service}:{registry.placement(service, profile).port}"
        else:
            target = registry.url(service, profile).removeprefix("http://")
        jobs.append(
            {
                "job_name": f"hivemind-{service}",
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [target], "labels": {"service": service, "node": node}}
                ],
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"profile": profile},
        },
        "rule_files": [ALERT_RULES],
        "scrape_configs": jobs,
    }


def scrape_config_text(registry: Registry, profile: str, *, by_name: bool = False) -> str:
    body = yaml.safe_dump(scrape_config(registry, profile, by_name=by_name), sort_keys=False)
    flag = " --by-name" if by_name else ""
    return (
        f"# Rendered from hosts.yaml by `hivemind hosts prometheus --profile {profile}{flag}`.\n"
        f"# Do not edit: change hosts.yaml and render again.\n{body}"
    )


def monitoring_units(
    registry: Registry, layout: DeployLayout, monitoring: Monitoring, node: str
) -> list[Unit]:
    """Prometheus and Grafana containers, with their volumes, on the monitoring node."""
    if monitoring.node != node:
        return []
    profile = layout.profile
    address = registry.profile(profile).nodes[node].address
    prom = Unit("hivemind-prometheus.container", header(profile, node))
    prom.add("Unit", "Description", f"Hive-Mind Prometheus ({profile} on {node})")
    prom.add("Unit", "After", "network-online.target")
    c = "Container"
    prom.add(c, "ContainerName", "hivemind-prometheus")
    prom.add(c, "Image", PROMETHEUS_IMAGE)
    prom.add(c, "Network", f"{NETWORK}.network")
    port = monitoring.prometheus_port
    prom.add(c, "PublishPort", f"{address}:{port}:9090")
    prom.add(
        c,
        "Volume",
        f"{CONFIG_ROOT}/prometheus/{profile}.yml:/etc/prometheus/prometheus.yml:ro,Z",
    )
    prom.add(
        c,
        "Volume",
        f"{CONFIG_ROOT}/prometheus/{ALERT_RULES}:/etc/prometheus/{ALERT_RULES}:ro,Z",
    )
    prom.add(c, "Volume", "hivemind-prometheus.volume:/prometheus:U,Z")
    prom.add(
        c, "Exec", "--config.file=/etc/prometheus/prometheus.yml --storage.tsdb.retention.time=30d"
    )
    prom.add(c, "Label", "app=hivemind service=prometheus")
    prom.add("Service", "Restart", "always")
    prom.add("Install", "WantedBy", "multi-user.target default.target")

    graf = Unit("hivemind-grafana.container", header(profile, node))
    graf.add("Unit", "Description", f"Hive-Mind Grafana ({profile} on {node})")
    graf.add("Unit", "After", "network-online.target hivemind-prometheus.service")
    graf.add(c, "ContainerName", "hivemind-grafana")
    graf.add(c, "Image", GRAFANA_IMAGE)
    graf.add(c, "Network", f"{NETWORK}.network")
    graf.add(c, "PublishPort", f"{address}:{monitoring.grafana_port}:3000")
    graf.add(c, "Volume", f"{CONFIG_ROOT}/grafana/provisioning:/etc/grafana/provisioning:ro,Z")
    graf.add(c, "Volume", f"{CONFIG_ROOT}/grafana/dashboards:/var/lib/grafana/dashboards:ro,Z")
    graf.add(c, "Volume", "hivemind-grafana.volume:/var/lib/grafana:U,Z")
    graf.add(c, "Environment", "HIVEMIND_PROMETHEUS_URL=http://hivemind-prometheus:9090")
    graf.add(c, "Environment", "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana-admin")
    graf.add(c, "Environment", "GF_USERS_ALLOW_SIGN_UP=false")
    graf.add(
        c,
        "Secret",
        f"{SECRET_GRAFANA_ADMIN},type=mount,target=/run/secrets/grafana-admin,mode=0444",
    )
    graf.add(c, "Label", "app=hivemind service=grafana")
    graf.add("Service", "Restart", "always")
    graf.add("Install", "WantedBy", "multi-user.target default.target")

    volumes = []
    for name in ("hivemind-prometheus", "hivemind-grafana"):
        vol = Unit(f"{name}.volume", header(profile, node))
        vol.add("Unit", "Description", f"Hive-Mind {name.split('-')[1]} data")
        vol.add("Volume", "VolumeName", name)
        volumes.append(vol)
    return [prom, graf, *volumes]
