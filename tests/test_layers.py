"""Imports only go down the layers (see shared design: store < db < registry < cli/server)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modelkeep"

FORBIDDEN = {
    "store": {"modelkeep.db", "modelkeep.registry", "sqlalchemy", "alembic"},
    "registry": {"modelkeep.cli", "modelkeep.server", "modelkeep.client", "modelkeep.ml", "fastapi", "httpx", "typer"},
    # ml/ sits on the registry interface; heavy frameworks are imported inside functions (not checked here).
    "ml": {
        "modelkeep.cli", "modelkeep.server", "modelkeep.client", "modelkeep.db",
        "sqlalchemy", "alembic", "fastapi", "httpx", "typer",
    },
    "db": {"modelkeep.registry", "modelkeep.cli", "modelkeep.server", "modelkeep.client"},
    "server": {"modelkeep.cli", "modelkeep.client", "typer"},
    "client": {"modelkeep.cli", "modelkeep.server", "fastapi", "starlette", "uvicorn", "typer", "sqlalchemy"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the module's package
                base = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def _violations(layer: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return bad


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert _violations(layer) == []
