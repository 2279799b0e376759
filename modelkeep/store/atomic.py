"""Durable, atomic file writes: unique temp name -> write -> fsync -> rename -> fsync dir."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_dir", "durable_rename", "temp_name"]


def temp_name(final: Path) -> Path:
    # unique temp name: a shared one lets two writers interleave bytes in one file
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_rename(src: Path, dst: Path) -> None:
    """Rename a finished, fsynced file into place and make the rename durable."""
    os.replace(src, dst)
    fsync_dir(dst.parent)


@contextmanager
def atomic_write(final: Path) -> Iterator[BinaryIO]:
    """Write ``final`` so that readers see either nothing or the whole file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    f = open(tmp, "wb")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        durable_rename(tmp, final)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
