"""Imports point down: no module imports one from a higher layer (walked with `ast`, nothing imported)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from supertest.config import PROJECT_ROOT

# Lowest first. A module belongs to the last entry that is its name or a prefix of it.
LAYERS = [
    # Pure pieces: settings, the words, errors, file and process helpers, the run's hostile-file handling.
    ["supertest.config", "supertest.encryption", "supertest.errors", "supertest.outcomes", "supertest.extensions",
     "supertest.nofollow", "supertest.splice",
     "supertest.connections", "supertest.locks", "supertest.execution.processes", "supertest.execution.collect",
     "supertest.execution.redact", "supertest.execution.results", "supertest.execution.progress",
     "supertest.execution.workspace", "supertest.execution.runner", "supertest.execution.users",
     "supertest.execution.network", "supertest.execution.sandbox", "supertest.execution.preflight",
     "supertest.wake", "supertest.slots", "supertest.ci", "supertest.logs", "supertest.registry", "supertest.queues",
     "supertest.cron"],
    ["supertest.models", "supertest.storage", "supertest.events", "supertest.execution.watch"],
    ["supertest.services"],
    ["supertest.execution", "supertest.tasks", "supertest.housekeeping", "supertest.broker"],
    ["supertest.auth", "supertest.views", "supertest.cli"],
    ["supertest", "supertest.stack", "supertest.worker", "supertest.clock"],
]


def layer_of(module: str) -> int:
    matches = [(len(name), number) for number, names in enumerate(LAYERS) for name in names
               if module == name or module.startswith(name + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted((PROJECT_ROOT / "supertest").rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def is_module(name: str) -> bool:
    path = PROJECT_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(module: str, path: Path) -> list[str]:
    """The supertest modules `path` imports, at any depth (lazy imports inside functions too)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # `from supertest.execution import collect` imports the module supertest.execution.collect.
            names += [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names]
    return [name for name in names if name == "supertest" or name.startswith("supertest.")]


@pytest.mark.parametrize(("module", "path"), modules(), ids=[name for name, _ in modules()])
def test_a_module_imports_nothing_from_a_higher_layer(module: str, path: Path) -> None:
    mine = layer_of(module)
    higher = [name for name in imports(module, path) if layer_of(name) > mine]
    assert higher == [], f"{module} (layer {mine}) imports {higher}"


def test_the_walk_sees_a_climbing_import(tmp_path: Path) -> None:
    """The check itself can fail: a low module that imports a view is caught."""
    climbing = tmp_path / "outcomes.py"
    climbing.write_text("def f():\n    from supertest.views import pages\n")
    assert [layer_of(name) for name in imports("supertest.outcomes", climbing)] == [layer_of("supertest.views")]
    assert layer_of("supertest.views.pages") > layer_of("supertest.outcomes")
