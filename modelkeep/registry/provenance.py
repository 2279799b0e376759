"""Provenance captured automatically at push: where and with what a version was made.

``capture(path)`` returns a JSON-ready dict::

    git       commit, branch, dirty, remote of the repository holding ``path``
              (absent when ``path`` is in no repository or git is not installed)
    python    version and implementation
    packages  installed distributions, name -> version
    os        system, release, platform string, machine
    cpu       model and logical count
    gpus      name / driver / memory of each NVIDIA GPU when ``nvidia-smi`` exists
    host      hostname
    modelkeep version of modelkeep itself

Everything but git depends only on the process, so it is computed once per
process (the package list and ``nvidia-smi`` are the slow parts). The git
repository is found by looking for ``.git`` in Python first, so a path outside
any repository costs no subprocess at all. Subprocesses run with a timeout; a
missing or failing tool leaves its section out rather than failing the push.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["capture", "git_info", "process_info"]

log = logging.getLogger(__name__)

GIT_TIMEOUT = 5.0
GPU_TIMEOUT = 5.0


def capture(path: str | Path) -> dict[str, Any]:
    """Provenance of a push of ``path`` made by this process."""
    out = dict(process_info())
    git = git_info(Path(path))
    if git is not None:
        out["git"] = git
    return out


def git_info(path: Path) -> dict[str, Any] | None:
    """Commit, branch, dirty flag and remote of the repository holding ``path``; None outside one."""
    start = path if path.is_dir() else path.parent
    start = start.absolute()
    if not any((p / ".git").exists() for p in (start, *start.parents)):
        return None
    git = shutil.which("git")
    if git is None:
        log.debug("git not installed; no git provenance for %s", path)
        return None
    commit = _run([git, "rev-parse", "HEAD"], start, GIT_TIMEOUT)
    if commit is None:  # a repository without commits yet, or not a work tree
        return None
    info: dict[str, Any] = {"commit": commit}
    branch = _run([git, "rev-parse", "--abbrev-ref", "HEAD"], start, GIT_TIMEOUT)
    info["branch"] = None if branch in (None, "HEAD") else branch
    status = _run([git, "status", "--porcelain", "--untracked-files=no"], start, GIT_TIMEOUT)
    info["dirty"] = bool(status) if status is not None else None
    info["remote"] = _run([git, "config", "--get", "remote.origin.url"], start, GIT_TIMEOUT)
    return info


@cache
def process_info() -> dict[str, Any]:
    """The parts of provenance that depend only on this process (computed once)."""
    uname = platform.uname()
    info: dict[str, Any] = {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": (packages := _packages()),
        "os": {
            "system": uname.system,
            "release": uname.release,
            "platform": platform.platform(),
            "machine": uname.machine,
        },
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "host": socket.gethostname(),
        "modelkeep": packages.get("modelkeep"),
    }
    gpus = _gpus()
    if gpus:
        info["gpus"] = gpus
    return info


def _packages() -> dict[str, str]:
    # Names and versions come from the metadata folders' names
    # (``name-version.dist-info``, as wheels install them): reading and parsing
    # every METADATA file instead cost ~0.1 s per push. Folders whose names do not
    # say (old eggs) are read. The first of a name on sys.path wins, as on import.
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # zip files, missing folders
            continue
        for folder in names:
            stem, dot, kind = folder.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            name, dash, version = stem.partition("-")
            if not dash or not version or "-" in version:
                meta = metadata.PathDistribution(Path(entry or ".") / folder).metadata
                name, version = meta.get("Name") or "", meta.get("Version") or ""
            if name and version:
                found.setdefault(name.lower().replace("_", "-"), version)
    return dict(sorted(found.items()))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass  # not Linux: fall back to what platform knows
    return platform.processor() or None


def _gpus() -> list[dict[str, str]]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    out = _run(
        [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
        None,
        GPU_TIMEOUT,
    )
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": parts[2]})
    return gpus


def _run(cmd: list[str], cwd: Path | None, timeout: float) -> str | None:
    """stdout of ``cmd`` stripped, or None when it fails: provenance is best effort by design."""
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", cmd[0], exc)
        return None
    if proc.returncode != 0:
        log.debug("%s exited %d: %s", " ".join(cmd[:3]), proc.returncode, proc.stderr.strip())
        return None
    return proc.stdout.strip()
