"""What `pip install modelkeep` installs is enough for the core and the CLI.

The test extra installs more (httpx, FastAPI, scikit-learn...), and those pull
in further packages, so a module importing one of them at module level would
pass every other test and still break the README's demo on a fresh machine.
Modules of optional extras (server, client, the S3 backend) are left out; they
import their frameworks where used and raise MissingExtra without them.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "modelkeep"
OPTIONAL = ("server", "client", "store/backends/s3.py")


def _runtime_distributions() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are lazy on purpose
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_only_declared_runtime_dependencies():
    declared = _runtime_distributions()
    owners = packages_distributions()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(OPTIONAL):
            continue
        for top in _module_level_imports(path):
            if top == "modelkeep" or top in sys.stdlib_module_names or top == "__future__":
                continue
            dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
            if not dists & declared:
                wrong.append(f"{rel} imports {top} ({', '.join(sorted(dists))}), not a runtime dependency")
    assert not wrong, "\n".join(wrong)
