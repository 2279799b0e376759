"""What a training run records about its environment, beyond what every push captures.

Every push already records python, packages, OS, CPU and NVIDIA GPUs
(``registry/provenance.py``). A run adds:

* ``git``: commit, branch, dirty flag and remote of the working directory's
  repository, plus ``diff_digest``: the BLAKE3 of ``git diff HEAD --binary``
  followed by the paths of untracked files, so two runs on the same commit
  with different uncommitted edits are told apart (None when clean);
* ``cuda``: torch's CUDA build, whether a device is visible, device names
  (only when torch is already imported: a run never imports torch itself);
* ``seeds``: see :func:`seed_state`;
* ``peak_rss_bytes``: the process's peak resident memory (``getrusage``),
  which includes what the process used before the run started.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidInput
from modelkeep.registry.provenance import git_info
from modelkeep.store.digest import hash_bytes

__all__ = ["git_state", "cuda_info", "seed_state", "set_seeds", "peak_rss_bytes"]

GIT_TIMEOUT = 10.0


def git_state(path: Path) -> dict[str, Any] | None:
    """Git info of the repository holding ``path`` with a digest of uncommitted changes; None outside one."""
    info = git_info(path)
    if info is None:
        return None
    git = shutil.which("git")
    diff = _run([git, "diff", "HEAD", "--binary"], path) if git else None
    untracked = _run([git, "ls-files", "--others", "--exclude-standard", "-z"], path) if git else None
    if diff is None or untracked is None:
        info["diff_digest"] = None
        return info
    changes = diff + b"\0untracked\0" + untracked
    info["diff_digest"] = str(hash_bytes(changes)) if (diff or untracked) else None
    info["dirty"] = bool(diff or untracked)
    return info


def cuda_info() -> dict[str, Any] | None:
    """CUDA as torch sees it, when torch is already imported; None otherwise."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    available = bool(torch.cuda.is_available())
    return {
        "torch_cuda": torch.version.cuda,
        "available": available,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
    }


def set_seeds(seed: int) -> dict[str, int]:
    """Seed python's ``random``, numpy's global generator and torch (when imported); returns what was set."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    out = {"python": seed}
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)
        out["numpy"] = seed
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        out["torch"] = seed
    return out


def seed_state() -> dict[str, Any]:
    """What can be read of the random generators now.

    ``python_state`` / ``numpy_state``: digests of the generator states (equal
    digests at the start of two runs mean equal random streams); ``torch``: the
    seed torch reports (``torch.initial_seed()``), when torch is imported.
    """
    out: dict[str, Any] = {"python_state": str(hash_bytes(repr(random.getstate()).encode()))}
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, *_ = np.random.get_state()
        out["numpy_state"] = str(hash_bytes(name.encode() + keys.tobytes() + int(pos).to_bytes(8, "little")))
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.initial_seed())
    return out


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _run(cmd: list[str | None], cwd: Path) -> bytes | None:
    start = cwd if cwd.is_dir() else cwd.parent
    try:
        proc = subprocess.run(
            [c for c in cmd if c is not None],
            cwd=start,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # best effort, like the rest of provenance
    return proc.stdout if proc.returncode == 0 else None
