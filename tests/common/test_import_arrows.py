"""Arrows point down: ``libs/`` imports nothing from ``services/``, ``libs/common`` nothing from
``libs/cli``, and no service imports another service (they talk over HTTP and Redis).

A static walk of every module's syntax tree, lazy imports inside functions included, so an
import that only runs on one code path is caught too; the packages' declared dependencies are
checked the same way."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from hivemind_common import python_ast

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
SERVICE_PACKAGES = {f"hivemind_{name}": name for name in SERVICES}
SERVICE_DISTS = {f"hivemind-{name}" for name in SERVICES}


def modules(root: Path) -> list[Path]:
    return [
        p
        for p in sorted(root.rglob("*.py"))
        if not {"__pycache__", "build"}.intersection(p.parts)
        and not any(part.endswith(".egg-info") for part in p.parts)
    ]


def imported(path: Path) -> set[str]:
    """Every top-level package a module imports, anywhere in it (``importlib.import_module``
    with a literal name too)."""
    tree = python_ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def violations(root: Path, banned: set[str]) -> list[str]:
    """``path: package`` for every module under ``root`` that imports a banned package."""
    found = []
    for path in modules(root):
        for name in sorted(imported(path) & banned):
            found.append(f"{path.relative_to(root.parent)}: imports {name}")
    return found


def declared(pyproject: Path) -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    return {re.split(r"[\s\[;<>=!~]", dep, maxsplit=1)[0] for dep in deps}


def test_the_walk_catches_a_lazy_import_of_a_service(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "ok.py").write_text("import json\nfrom hivemind_common import keys\n")
    (lib / "lazy.py").write_text(
        "def f():\n    from hivemind_trainer.cycle import run_cycle\n    return run_cycle\n"
    )
    (lib / "dynamic.py").write_text(
        "import importlib\nm = importlib.import_module('hivemind_mcp.server')\n"
    )
    found = violations(lib, set(SERVICE_PACKAGES))
    assert found == [
        "lib/dynamic.py: imports hivemind_mcp",
        "lib/lazy.py: imports hivemind_trainer",
    ]


def test_libs_import_no_service() -> None:
    assert len(SERVICE_PACKAGES) == 6, SERVICE_PACKAGES  # the walk knows every service
    found = []
    for lib in sorted((REPO / "libs").glob("*/hivemind_*")):
        found += violations(lib, set(SERVICE_PACKAGES))
    assert found == []


def test_common_does_not_import_the_cli() -> None:
    assert violations(REPO / "libs/common/hivemind_common", {"hivemind_cli"}) == []


def test_no_service_imports_another_service() -> None:
    found = []
    for package, name in SERVICE_PACKAGES.items():
        others = set(SERVICE_PACKAGES) - {package}
        found += violations(REPO / "services" / name / package, others)
    assert found == []


def test_no_lib_or_service_declares_a_dependency_on_a_service() -> None:
    found = []
    for pyproject in sorted(REPO.glob("libs/*/pyproject.toml")):
        found += [f"{pyproject}: {d}" for d in sorted(declared(pyproject) & SERVICE_DISTS)]
    for name in SERVICES:
        pyproject = REPO / "services" / name / "pyproject.toml"
        others = SERVICE_DISTS - {f"hivemind-{name}"}
        found += [f"{pyproject}: {d}" for d in sorted(declared(pyproject) & others)]
    assert found == []
