"""Whole-file push and pull (until chunk-level transfer replaces them).

Push is an upload session: ``POST /uploads`` {name} opens one for the caller,
``PUT /uploads/{id}/files?path=rel/path`` streams each file, ``POST
/uploads/{id}/commit`` {push arguments} makes the version from the staged files
and deletes them, ``DELETE /uploads/{id}`` abandons it. Only the caller who
opened a session may use it. Staged files live on the server that received
them, so behind a load balancer a session needs sticky routing.

Pull is ``GET /archive?ref=...``: an uncompressed tar of the version's files;
the header ``X-Modelkeep-Version`` names the exact version sent.

Paths are checked once decoded and again after every further percent-decoding,
so ``..``, absolute paths, backslashes, NUL bytes and their (double) encodings
are refused (InvalidPath), whatever layer would decode them later.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from modelkeep.errors import Forbidden, InvalidInput, InvalidPath, MalformedRequest, NotFoundError
from modelkeep.registry.names import VersionRef, check_name
from modelkeep.registry.operations import TRANSFER_METHODS, Role
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.server.deps import caller
from modelkeep.server.auth import namespace_for
from modelkeep.server.routes._operation import parameters
from modelkeep.server.schemas import UploadCreate, UploadOpened
from modelkeep.store.manifest import normalize_path

__all__ = ["router", "safe_path"]

router = APIRouter(tags=["versions"], dependencies=[Depends(caller)])

_ID = re.compile(r"[0-9a-f]{32}")
_LINEAGE = ("derived_from", "trained_on", "evaluated_on", "contains", "variant_of")
_PUSH = TRANSFER_METHODS["push"]
_PULL = TRANSFER_METHODS["pull"]


def safe_path(path: str) -> str:
    """The normalized relative path, refusing traversal in any encoding. Raises InvalidPath."""
    seen = path
    for _ in range(4):  # each round undoes one layer of percent-encoding
        normalize_path(seen)
        decoded = unquote(seen)
        if decoded == seen:
            break
        seen = decoded
    else:
        raise InvalidPath(f"path is percent-encoded too many times: {path!r}")
    return normalize_path(path)


def _session(request: Request, upload_id: str, user: str) -> Path:
    if not _ID.fullmatch(upload_id):
        raise NotFoundError("no such upload")
    root: Path = request.app.state.mk.staging / upload_id
    try:
        meta = json.loads((root / "meta.json").read_text())
    except FileNotFoundError:
        raise NotFoundError("no such upload") from None
    if meta["user"] != user:
        raise Forbidden("this upload belongs to another user")
    return root


@router.post("/uploads", summary="Open a push (role: contributor)", response_model=UploadOpened)
async def open_upload(request: Request, body: UploadCreate) -> UploadOpened:
    ctx = request.app.state.mk
    principal = await caller(request)
    check_name(body.name)
    principal.require(Role.CONTRIBUTOR, namespace_for(body.name))
    upload_id = uuid.uuid4().hex
    root = ctx.staging / upload_id
    (root / "files").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"user": principal.user, "name": body.name}))
    return UploadOpened(id=upload_id)


@router.put("/uploads/{upload_id}/files", summary="Upload one file of a push (role: contributor)")
async def put_file(request: Request, upload_id: str, path: str, executable: bool = False) -> JSONResponse:
    ctx = request.app.state.mk
    principal = await caller(request)
    rel = safe_path(path)
    root = await run_in_threadpool(_session, request, upload_id, principal.user)
    target = root / "files" / rel
    files = (root / "files").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    if files not in target.parent.resolve().parents and target.parent.resolve() != files:
        raise InvalidPath(f"path leaves the upload: {path!r}")
    if target.is_dir():
        raise InvalidPath(f"{rel!r} is a directory of this upload")
    size = 0
    with open(target, "wb") as f:
        async for block in request.stream():
            size += len(block)
            await run_in_threadpool(f.write, block)
    if executable:
        target.chmod(0o755)
    return JSONResponse({"path": rel, "size": size})


@router.post("/uploads/{upload_id}/commit", summary="Make the version from the uploaded files (role: contributor)")
async def commit_upload(request: Request, upload_id: str) -> JSONResponse:
    ctx = request.app.state.mk
    principal = await caller(request)
    root = await run_in_threadpool(_session, request, upload_id, principal.user)
    name = json.loads((root / "meta.json").read_text())["name"]
    principal.require(Role.CONTRIBUTOR, namespace_for(name))
    args = await _push_arguments(request)
    for key in _LINEAGE:  # lineage may name other namespaces: the caller must see them
        refs = args.get(key)
        for ref in [refs] if isinstance(refs, str) else (refs or ()):
            principal.require(Role.VIEWER, namespace_for(VersionRef.parse(ref).artifact))
    registry = ctx.registry_for(principal)
    try:
        version = await run_in_threadpool(lambda: registry.push(root / "files", name, **args))
    finally:
        await run_in_threadpool(shutil.rmtree, root, True)
    body = to_wire(version)
    ctx.dispatcher.emit(_PUSH.event, namespace_for(name), principal.user, body)
    return JSONResponse(body)


@router.delete("/uploads/{upload_id}", summary="Abandon a push")
async def abandon_upload(request: Request, upload_id: str) -> JSONResponse:
    ctx = request.app.state.mk
    principal = await caller(request)
    root = await run_in_threadpool(_session, request, upload_id, principal.user)
    await run_in_threadpool(shutil.rmtree, root, True)
    return JSONResponse({"deleted": upload_id})


async def _push_arguments(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        raw = json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedRequest("the body must be a JSON object of push arguments")
    hints = {p.name: hint for p, hint in parameters("push") if p.name not in ("path", "name")}
    unknown = set(raw) - set(hints)
    if unknown:
        raise MalformedRequest(f"unknown arguments: {', '.join(sorted(unknown))}")
    out = {}
    for key, value in raw.items():
        try:
            out[key] = from_wire(hints[key], value)
        except InvalidInput as exc:
            raise MalformedRequest(f"argument {key}: {exc.message}") from None
    return out


@router.get("/archive", summary="Download a version's files as a tar (role: viewer)")
async def archive(request: Request, ref: str) -> FileResponse:
    ctx = request.app.state.mk
    principal = await caller(request)
    parsed = VersionRef.parse(ref)
    principal.require(_PULL.role, namespace_for(parsed.artifact))
    registry = ctx.registry_for(principal)
    tmp = Path(tempfile.mkdtemp(prefix="pull-", dir=ctx.staging))
    try:
        version = await run_in_threadpool(registry.pull, ref, tmp / "files")
        tar_path = tmp / "version.tar"
        await run_in_threadpool(_write_tar, tmp / "files", tar_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(
        tar_path,
        media_type="application/x-tar",
        headers={"X-Modelkeep-Version": version.ref},
        background=BackgroundTask(shutil.rmtree, tmp, True),
    )


def _write_tar(root: Path, out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, _, names in sorted(os.walk(root)):
            for n in sorted(names):
                full = Path(dirpath) / n
                info = tar.gettarinfo(str(full), arcname=full.relative_to(root).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
                with open(full, "rb") as f:
                    tar.addfile(info, f)
