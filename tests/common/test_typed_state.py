"""Every service's state is typed: a dataclass made in its lifespan (``state.py``), and no route or
service function takes its state, or a dependency read from it, as ``Any``."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

from hivemind_common import python_ast

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
STATE_CLASSES = {
    "gateway": "GatewayState",
    "inference": "InferenceState",
    "embedding": "EmbeddingState",
    "trainer": "TrainerState",
    "exporter": "ExporterState",
    "mcp": "McpState",
}


def any_state_parameters(source: str, where: str) -> list[str]:
    """``where:line name`` for every function parameter called ``state`` annotated ``Any``."""
    found = []
    for node in ast.walk(python_ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                ann = arg.annotation
                if arg.arg == "state" and ann is not None and ast.unparse(ann) in {"Any", "object"}:
                    found.append(f"{where}:{node.lineno} {node.name}")
    return found


def test_the_check_finds_an_untyped_state() -> None:
    source = (
        "async def f(state: Any, x: int) -> None: ...\ndef g(state: GatewayState) -> None: ...\n"
    )
    assert any_state_parameters(source, "m.py") == ["m.py:1 f"]


def test_every_service_has_its_state_dataclass() -> None:
    assert set(SERVICES) == set(STATE_CLASSES)
    for service, name in STATE_CLASSES.items():
        module = importlib.import_module(f"hivemind_{service}.state")
        assert dataclasses.is_dataclass(getattr(module, name)), service


@pytest.mark.parametrize("service", SERVICES)
def test_no_function_takes_its_state_as_any(service: str) -> None:
    package = REPO / "services" / service / f"hivemind_{service}"
    found = []
    for path in sorted(package.rglob("*.py")):
        found += any_state_parameters(path.read_text(), str(path.relative_to(REPO)))
    assert found == []
