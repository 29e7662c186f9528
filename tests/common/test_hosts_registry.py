"""The hosts registry places every service once per profile and gives their URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivemind_common.hosts import (
    SERVICES,
    RegistryError,
    load_registry,
    parse_registry,
    service_url,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """
profiles:
  p:
    nodes:
      a: {address: 10.0.0.1, labels: [gpu]}
      b: {address: 10.0.0.2}
    placement:
      gateway: b
      mcp: b
      embedding: b
      inference: a
      trainer: a
      exporter: {node: a, port: 9000}
"""


def test_the_repo_registry_is_valid_and_places_homelab_services_on_the_right_nodes() -> None:
    reg = load_registry(REPO / "hosts.yaml")
    assert set(reg.profiles) >= {"local", "homelab"}
    home = reg.profile("homelab")
    assert home.placement["embedding"].node == "r720xd"
    for svc in ("inference", "trainer", "exporter"):
        assert home.placement[svc].node == "aurora"
    assert reg.url("inference", "homelab") == f"http://{home.nodes['aurora'].address}:8089"
    assert reg.url("gateway", "local") == "http://127.0.0.1:8090"


def test_shorthand_placement_takes_the_default_port() -> None:
    reg = parse_registry(GOOD)
    assert reg.placement("gateway", "p").port == 8090
    assert reg.placement("exporter", "p").port == 9000
    assert reg.services_on("a", "p") == ["inference", "trainer", "exporter"]


def test_a_service_left_unplaced_is_an_error() -> None:
    text = GOOD.replace("      mcp: b\n", "")
    with pytest.raises(RegistryError, match="mcp"):
        parse_registry(text)


def test_a_port_clash_on_one_node_is_an_error() -> None:
    text = GOOD.replace("exporter: {node: a, port: 9000}", "exporter: {node: a, port: 8089}")
    with pytest.raises(RegistryError, match="port clash"):
        parse_registry(text)


def test_an_unknown_node_or_service_is_an_error() -> None:
    with pytest.raises(RegistryError, match="unknown node"):
        parse_registry(GOOD.replace("gateway: b", "gateway: c"))
    with pytest.raises(RegistryError, match="unknown services"):
        parse_registry(GOOD + "      webfetch: a\n")


def test_broken_yaml_says_where() -> None:
    with pytest.raises(RegistryError, match="not valid YAML"):
        parse_registry("profiles: [\n")


def test_service_url_prefers_the_environment_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(GOOD)
    assert service_url("inference", profile="p", hosts_file=hosts) == "http://10.0.0.1:8089"
    monkeypatch.setenv("HIVEMIND_INFERENCE_URL", "http://elsewhere:1234/")
    assert service_url("inference", profile="p", hosts_file=hosts) == "http://elsewhere:1234"


def test_every_service_is_known() -> None:
    assert SERVICES == ("gateway", "mcp", "embedding", "inference", "trainer", "exporter")


def test_a_named_hosts_file_that_is_missing_or_unreadable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A named file that does not exist fell back to ./hosts.yaml, then the repository's: a
    typo in --file rendered, and wrote, the default layout."""
    from hivemind_common.hosts import RegistryError, find_hosts_file, load_registry

    with pytest.raises(RegistryError, match="not found"):
        find_hosts_file(tmp_path / "typo.yaml")
    monkeypatch.setenv("HIVEMIND_HOSTS_FILE", str(tmp_path / "also-missing.yaml"))
    with pytest.raises(RegistryError, match="not found"):
        find_hosts_file()
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"profiles: \xff\n")
    with pytest.raises(RegistryError, match="cannot be read"):
        load_registry(bad)
