"""``hivemind hosts show|render|prometheus``: read the registry, render a node's deployment."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hivemind_cli.render import render_node, scrape_config_text, write_node
from hivemind_common.hosts import RegistryError, load_registry

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


@app.command("render")
def render(
    node: str = typer.Option(..., help="The node whose units to write (e.g. aurora)."),
    out: Path = typer.Option(..., help="Directory for the units (e.g. /etc/containers/systemd)."),
    profile: str = typer.Option("homelab", help="Profile of hosts.yaml."),
    redis: str = typer.Option(
        None, help="Redis topology: cluster, sentinel or none (default: the profile's)."
    ),
    hosts_file: str = typer.Option(None, "--file", help="Path of hosts.yaml."),
) -> None:
    """Write a node's Quadlet units: network, volumes, services, Redis and monitoring."""
    if redis not in (None, "cluster", "sentinel", "none"):
        typer.echo("error: --redis must be cluster, sentinel or none", err=True)
        raise typer.Exit(2)
    try:
        registry = load_registry(hosts_file)
        files = render_node(registry, profile=profile, node=node, redis=redis)  # type: ignore[arg-type]
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path in write_node(files, out):
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
