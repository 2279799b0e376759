"""Plain files and directories: stored as they are, loaded back as a local path."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidPath
from modelkeep.ml.flavors.base import Flavor, ModelInfo, Saved

__all__ = ["FilesFlavor", "copy_tree"]

CONTENT = "files"


class FilesFlavor(Flavor):
    """Anything on disk. ``load`` returns the path of the pulled copy (a file, or a folder)."""

    name = "files"

    def accepts(self, obj: Any) -> bool:
        return isinstance(obj, str | Path) and Path(obj).exists()

    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        src = Path(obj)
        target = dest / CONTENT
        if src.is_dir():
            copy_tree(src, target)
            return Saved({"path": CONTENT, "type": "directory"}, {})
        target.mkdir()
        shutil.copy2(src, target / src.name)
        return Saved({"path": f"{CONTENT}/{src.name}", "type": "file"}, {})

    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        return _inside(root, str(info.data.get("path", CONTENT)))


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a folder; symlinks are refused (they could lead outside it), like the registry does."""
    for p in src.rglob("*"):
        if p.is_symlink():
            raise InvalidPath(f"{p} is a symlink; log the files it points to instead")
    shutil.copytree(src, dest)


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise InvalidPath(f"model file path {rel!r} leads outside the model folder")
    return path
