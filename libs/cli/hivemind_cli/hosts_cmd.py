"""``hivemind hosts show|render|prometheus``: read the registry, render a node's deployment."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hivemind_cli.render import RedisMode, redis_mode, render_node, scrape_config_text, write_node
from hivemind_cli.render.failure_domains import single_points
from hivemind_cli.render.model import deploy_layout
from hivemind_common.hosts import Registry, RegistryError, load_registry

app = typer.Typer(help="The hosts registry (hosts.yaml).", no_args_is_help=True)


@app.command("show")
def show(
    profile: str = typer.Option(None, help="Only this profile."),
    hosts_file: str = typer.Option(None, "--file", help="Path of hosts.yaml."),
) -> None:
    """Validate hosts.yaml and show where every service runs."""
    try:
        registry = load_registry(hosts_file)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    console = Console()
    for name, prof in registry.profiles.items():
        if profile and name != profile:
            continue
        table = Table("service", "node", "address", "port", "url", title=f"profile {name}")
        for service, where in prof.placement.items():
            node = prof.nodes[where.node]
            table.add_row(
                service, where.node, node.address, str(where.port), registry.url(service, name)
            )
        console.print(table)
        _print_failure_domains(console, registry, name)


def _print_failure_domains(console: Console, registry: Registry, profile: str) -> None:
    """What losing one node does to each Redis topology the profile describes."""
    nodes = list(registry.profile(profile).nodes)
    if len(nodes) < 2:
        return
    layout = deploy_layout(registry, profile)
    for topology in ("cluster", "sentinel"):
        if getattr(layout, topology) is None:
            continue
        points = single_points(layout, nodes, topology)  # type: ignore[arg-type]
        if not points:
            console.print(f"redis {topology}: survives the loss of any one node")
        for point in points:
            console.print(f"redis {topology}: [yellow]{point}[/yellow]")


@app.command("render")
def render(
    node: str = typer.Option(..., help="The node whose units to write (e.g. aurora)."),
    out: Path = typer.Option(
        None,
        help="Directory for the units (e.g. /etc/containers/systemd; default: quadlet/<node>).",
    ),
    profile: str = typer.Option("homelab", help="Profile of hosts.yaml."),
    redis: str = typer.Option(
        None, help="Redis topology: cluster, sentinel or none (default: the profile's)."
    ),
    hosts_file: str = typer.Option(None, "--file", help="Path of hosts.yaml."),
    allow_single_point: bool = typer.Option(
        False,
        "--allow-single-point",
        help="Render even when losing one node stops Redis (two-node homelabs; docs/deploy.md).",
    ),
) -> None:
    """Write a node's Quadlet units: network, volumes, services, Redis and monitoring."""
    if redis not in (None, "cluster", "sentinel", "none"):
        typer.echo("error: --redis must be cluster, sentinel or none", err=True)
        raise typer.Exit(2)
    try:
        registry = load_registry(hosts_file)
        mode: RedisMode = redis or redis_mode(registry, profile)  # type: ignore[assignment]
        files = render_node(registry, profile=profile, node=node, redis=mode)
        points = (
            single_points(
                deploy_layout(registry, profile), list(registry.profile(profile).nodes), mode
            )
            if mode != "none"
            else []
        )
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for point in points:
        typer.echo(f"{'warning' if allow_single_point else 'error'}: {point}", err=True)
    if points and not allow_single_point:
        typer.echo(
            "refusing to render a layout that one node's loss stops; add a node (docs/deploy.md, "
            "'Redis: Cluster or Sentinel') or pass --allow-single-point",
            err=True,
        )
        raise typer.Exit(1)
    for path in write_node(files, out if out is not None else Path("quadlet") / node):
        typer.echo(str(path))


@app.command("prometheus")
def prometheus(
    profile: str = typer.Option("homelab", help="Profile of hosts.yaml."),
    by_name: bool = typer.Option(
        False, "--by-name", help="Target services by name (compose) instead of by address."
    ),
    hosts_file: str = typer.Option(None, "--file", help="Path of hosts.yaml."),
) -> None:
    """Print the Prometheus scrape config for every service of a profile."""
    try:
        registry = load_registry(hosts_file)
        registry.profile(profile)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(scrape_config_text(registry, profile, by_name=by_name), nl=False)
