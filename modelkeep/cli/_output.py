"""Rendering for the CLI: Rich consoles, ``--json`` output, byte sizes, progress bars.

Commands hand records from ``registry/types.py`` to these helpers; nothing here
talks to the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelkeep.store.digest import Digest

__all__ = [
    "out",
    "err",
    "emit_json",
    "jsonable",
    "human_bytes",
    "bytes_in_unit_of",
    "when",
    "short_digest",
    "table",
    "transfer_progress",
    "fmt_value",
]

_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))


def out() -> Console:
    """Console on stdout; resolved at call time so test runners that swap streams see output."""
    # soft_wrap: sentences are left to the terminal to wrap; tables still fit the width.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


# -- JSON ---------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Records -> plain JSON values: dataclasses to dicts, datetimes ISO 8601, Digest to str."""
    if isinstance(obj, enum.Enum):  # before str: Kind and EdgeType are StrEnums
        return obj.value
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Digest):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    return str(obj)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(data), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# -- human formats ------------------------------------------------------------------------


def human_bytes(n: int | float) -> str:
    """Decimal units, as disks and networks count: 1.07 GB, 512.00 kB, 12 B."""
    for unit, size in _UNITS:
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def bytes_in_unit_of(n: int, reference: int) -> str:
    """``n`` in the unit ``human_bytes(reference)`` picks, so parts of a total line up."""
    for unit, size in _UNITS:
        if abs(reference) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def when(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def short_digest(d: Digest | None) -> str:
    return d.short if d is not None else "-"


def fmt_value(v: Any) -> str:
    """A param / metric / tag value for a table cell."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(jsonable(v), ensure_ascii=False)


def table(*columns: str, right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Table:
    """A borderless table; only the ``wrap`` columns (free text) may wrap, the others stay on one line."""
    t = Table(header_style="bold", box=None, pad_edge=False)
    for c in columns:
        t.add_column(
            c, justify="right" if c in right else "left", no_wrap=c not in wrap, overflow="fold" if c in wrap else "ellipsis"
        )
    return t


# -- progress -----------------------------------------------------------------------------


@contextlib.contextmanager
def transfer_progress(description: str, total: int | None, *, enabled: bool) -> Iterator[Any]:
    """Yield a ``progress(nbytes)`` callback that drives a bytes + bytes/s bar on stderr.

    The bar is hidden (the callback still works) when stderr is not a terminal or
    ``enabled`` is false (``--json``, ``--quiet``).
    """
    console = err()
    show = enabled and console.is_terminal
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not show,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(nbytes: int) -> None:
            bar.advance(task, nbytes)

        yield advance
