"""``hivemind hosts show`` (and, with the deployment work, ``render``)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

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
