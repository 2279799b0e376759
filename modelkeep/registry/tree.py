"""The tree of files a push reads: one file, or every file under a directory.

A file is pushed as one entry named by its basename. A directory is pushed as
all the files under it, named by their POSIX paths relative to it, in sorted
order. Symlinks are followed only when they stay inside the tree (their target
content is stored under the link's name); a symlink pointing outside is refused
by name, so a push can never read files its author did not mean to publish.
Anything that is neither a regular file, a directory nor such a symlink
(sockets, FIFOs, devices) is refused too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from modelkeep.errors import InvalidPath
from modelkeep.store.manifest import normalize_path

__all__ = ["SourceFile", "collect"]


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path  # absolute path to read the bytes from (symlinks resolved)
    rel: str  # normalized manifest path


def collect(path: str | Path) -> list[SourceFile]:
    """The files to push for ``path``, sorted by manifest path. Raises InvalidPath."""
    root = Path(path).expanduser().absolute()
    try:
        st = root.stat()
    except FileNotFoundError:
        raise InvalidPath(f"no such file or directory: {root}") from None
    except OSError as exc:
        raise InvalidPath(f"cannot read {root}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return [SourceFile(root.resolve(), normalize_path(root.name))]
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidPath(f"not a regular file or directory: {root}")
    files = _walk(root)
    if not files:
        raise InvalidPath(f"nothing to push: {root} contains no files")
    return sorted(files, key=lambda f: f.rel)


def _walk(root: Path) -> list[SourceFile]:
    real_root = root.resolve()
    out: list[SourceFile] = []
    escaping: list[str] = []

    def onerror(exc: OSError) -> None:
        raise InvalidPath(f"cannot read {exc.filename}: {exc.strerror}")

    # followlinks=False: a symlinked directory inside the tree is walked through
    # its resolved path below, after checking it stays inside.
    stack = [(root, "")]
    seen_dirs = {real_root}
    while stack:
        directory, prefix = stack.pop()
        for dirpath, dirnames, filenames in os.walk(directory, onerror=onerror, followlinks=False):
            rel_dir = os.path.relpath(dirpath, directory)
            rel_dir = prefix if rel_dir == "." else (f"{prefix}/{rel_dir}" if prefix else rel_dir).replace(os.sep, "/")
            for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                full = Path(dirpath, name)
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if full.is_symlink():
                    target = full.resolve()
                    if not _inside(target, real_root):
                        escaping.append(f"{rel} -> {os.readlink(full)}")
                        continue
                    if target.is_dir():
                        if target not in seen_dirs:  # a link cycle would otherwise loop forever
                            seen_dirs.add(target)
                            stack.append((target, rel))
                        continue
                    full = target
                try:
                    mode = full.stat().st_mode
                except OSError as exc:  # a dangling symlink, or a file removed while walking
                    raise InvalidPath(f"cannot read {rel}: {exc.strerror}") from None
                if not stat.S_ISREG(mode):
                    raise InvalidPath(f"not a regular file: {rel}")
                out.append(SourceFile(full, normalize_path(rel)))
    if escaping:
        raise InvalidPath(f"symlinks pointing outside {root} refused: {', '.join(sorted(escaping))}")
    return out


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents
