"""Unified text diffs of prompt and config versions, and the variables of prompt templates.

A file is diffed as text when it decodes as UTF-8 and holds no NUL byte; others
are reported as binary. Prompt variables are ``{name}`` (Python ``str.format``;
``{{`` and ``}}`` are escapes) and ``{{ name }}`` (Jinja / Mustache) placeholders;
dotted names and filters keep the leading name (``{{ user.name | upper }}`` ->
``user``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from modelkeep.ml import _versionfiles
from modelkeep.registry.api import Registry

__all__ = ["MAX_TEXT", "TextDiff", "is_text", "unified", "prompt_variables", "text_diffs", "version_variables"]

MAX_TEXT = 4 * 1024 * 1024  # larger files are not diffed line by line

_JINJA = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)[^{}]*?-?\}\}")
_FORMAT = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)(?:[.\[][^{}]*)?(?:![rsa])?(?::[^{}]*)?\}(?!\})")


@dataclass(frozen=True, slots=True)
class TextDiff:
    path: str
    status: str  # "changed", "added", "removed", "binary"
    diff: str  # unified diff text ("" for binary)


def is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unified(old: str, new: str, *, a: str = "a", b: str = "b", context: int = 3) -> str:
    """Unified diff of two texts ("" when equal)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=a, tofile=b, n=context
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def prompt_variables(text: str) -> list[str]:
    """Variable names of a prompt template in order of first appearance (``{var}`` and ``{{ var }}``)."""
    hits: list[tuple[int, str]] = []
    jinja_spans = []
    for m in _JINJA.finditer(text):
        hits.append((m.start(), m.group(1)))
        jinja_spans.append(m.span())
    stripped = list(text)
    for s, e in jinja_spans:
        stripped[s:e] = [" "] * (e - s)
    rest = "".join(stripped).replace("{{", "  ").replace("}}", "  ")
    hits.extend((m.start(), m.group(1)) for m in _FORMAT.finditer(rest))
    found: dict[str, None] = {}
    for _, name in sorted(hits):
        found.setdefault(name, None)
    return list(found)


def text_diffs(registry: Registry, a: str, b: str) -> list[TextDiff]:
    """Unified diffs of the changed, added and removed files between versions ``a`` and ``b``."""
    d = registry.diff(a, b)
    va, vb = registry.get(a), registry.get(b)
    out: list[TextDiff] = []
    for change in (*d.changed, *d.added, *d.removed):
        old = _read(registry, va.ref, change.path, change.old_size)
        new = _read(registry, vb.ref, change.path, change.new_size)
        if (old is not None and not is_text(old)) or (new is not None and not is_text(new)) or (
            old is None and change.old_size is not None) or (new is None and change.new_size is not None):
            out.append(TextDiff(change.path, "binary", ""))
            continue
        status = "changed" if change.old_size is not None and change.new_size is not None else (
            "added" if change.old_size is None else "removed")
        text = unified(
            (old or b"").decode("utf-8"), (new or b"").decode("utf-8"),
            a=f"{va.ref}/{change.path}" if old is not None else "/dev/null",
            b=f"{vb.ref}/{change.path}" if new is not None else "/dev/null",
        )
        out.append(TextDiff(change.path, status, text))
    return sorted(out, key=lambda t: t.path)


def _read(registry: Registry, ref: str, path: str, size: int | None) -> bytes | None:
    if size is None or size > MAX_TEXT:
        return None
    return _versionfiles.read_bytes(registry, ref, path)


def version_variables(registry: Registry, ref: str) -> dict[str, list[str]]:
    """Template variables of each text file of a version (files without variables omitted)."""
    out: dict[str, list[str]] = {}
    for path, size in registry.files(ref):
        if size > MAX_TEXT:
            continue
        data = _versionfiles.read_bytes(registry, ref, path)
        if is_text(data):
            names = prompt_variables(data.decode("utf-8"))
            if names:
                out[path] = names
    return out
