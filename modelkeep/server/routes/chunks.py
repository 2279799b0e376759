"""Chunk-level transfer: which chunks are missing, upload them, commit the manifest, fetch them.

The protocol (docs/transfer.md):

``POST /chunks/missing``  {"name", "digests": [...]} -> {"missing": [...]}   (contributor on name)
``POST /chunks?name=``    ``count u32 | count x (digest(32) | length u32 | elem u8 | phase u8) | the
                          chunks' bytes back to back``, at most ``MAX_BATCH_BYTES``; every chunk is
                          verified against its digest (a mismatch rejects the whole batch, nothing
                          stored); the batch's packs are sealed before the answer, so what was
                          acknowledged survives any crash.
``POST /chunks/commit``   {"name", "manifest", "new_bytes", push arguments} -> the Version
``GET  /chunks/manifest?ref=`` -> {"version", "manifest"}                    (viewer on ref)
``POST /chunks/fetch``    {"ref", "digests"} -> frames ``digest(32) | length u32 | bytes``; only
                          chunks of that version are served, so a viewer of one namespace can
                          never read another's bytes by digest.
"""

from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelkeep._gc import collector_paused
from modelkeep.errors import InvalidInput, MalformedRequest, PayloadTooLarge
from modelkeep.registry.names import VersionRef, check_name
from modelkeep.registry.operations import TRANSFER_METHODS, Role
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.server.auth import namespace_for
from modelkeep.server.deps import caller
from modelkeep.server.protocol import receive_into
from modelkeep.server.routes._operation import parameters
from modelkeep.store.chunking import MAX_CHUNK
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import Manifest
from modelkeep.store.planes import gather

__all__ = ["router", "MAX_BATCH_BYTES", "MAX_DIGESTS", "UP_COUNT", "UP_FRAME", "DOWN_FRAME"]

router = APIRouter(tags=["transfer"])

MAX_BATCH_BYTES = 64 * 1024 * 1024  # one upload or fetch answer
MAX_DIGESTS = 100_000  # one missing query
MAX_FETCH = 1024  # chunks in one fetch
MAX_MANIFEST_BYTES = 512 * 1024 * 1024  # a commit body (16k chunk refs per GiB, ~1.2 MB per GiB)
UP_COUNT = struct.Struct("<I")  # an upload body: how many chunks, then a table of UP_FRAME, then their bytes
UP_FRAME = struct.Struct("<32sIBB")  # digest | length | float element size | phase in element
DOWN_FRAME = struct.Struct("<32sI")
_PUSH = TRANSFER_METHODS["push"]
_PULL = TRANSFER_METHODS["pull"]
_COMMIT_SKIP = ("path", "name")


def _declared_length(request: Request, limit: int) -> int | None:
    declared = request.headers.get("content-length")
    expected = int(declared) if declared is not None and declared.isdigit() else None
    if expected is not None and expected > limit:
        raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
    return expected


async def _body(request: Request, limit: int) -> bytes:
    _declared_length(request, limit)
    out = bytearray()
    async for block in request.stream():
        out += block
        if len(out) > limit:
            raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
    return bytes(out)


async def _fill(request: Request, limit: int, out: memoryview) -> memoryview:
    """Receive a body of declared length ``len(out)`` into ``out``; returns the part received."""
    size = 0
    async for block in request.stream():
        end = size + len(block)
        if end > limit or end > len(out):
            raise PayloadTooLarge(f"request body over its declared length or the limit of {limit} bytes")
        size, _ = gather(out, size, (block,))  # copied without the interpreter lock
    return out[:size]


async def _json(request: Request, limit: int) -> dict[str, Any]:
    body = await _body(request, limit)
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedRequest("the body must be a JSON object")
    return doc


def _digests(doc: dict[str, Any], limit: int) -> list[Digest]:
    raw = doc.get("digests")
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise MalformedRequest('"digests" must be a list of "blake3:<64 hex>" strings')
    if len(raw) > limit:
        raise PayloadTooLarge(f"at most {limit} digests per request, got {len(raw)}")
    return [Digest.parse(d) for d in raw]


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise MalformedRequest('"name" must be an artifact name')
    return check_name(value)


async def _caller(request: Request, role: Role, artifact: str):  # type: ignore[no-untyped-def]
    principal = await caller(request)  # resolved by the router's dependency already
    principal.require(role, namespace_for(artifact))
    return request.app.state.mk, principal


@router.post("/chunks/missing", summary="Which of these chunks the server lacks (role: contributor)")
async def missing(request: Request) -> JSONResponse:
    doc = await _json(request, 16 * 1024 * 1024)
    ctx, _ = await _caller(request, Role.CONTRIBUTOR, _name(doc.get("name")))
    digests = _digests(doc, MAX_DIGESTS)
    # Chunks other replicas wrote are looked for at most once a second: a chunk
    # reported missing in that window is uploaded again, which costs bandwidth,
    # never correctness (the commit checks the manifest against a fresh index).
    absent = await run_in_threadpool(lambda: ctx.registry.store.missing(digests, max_age=1.0))
    return JSONResponse({"missing": [str(d) for d in digests if d in absent]})


@router.post("/chunks", summary="Upload a batch of chunks (role: contributor)")
async def upload(request: Request, name: str) -> JSONResponse:
    ctx, _ = await _caller(request, Role.CONTRIBUTOR, check_name(name))
    store = ctx.registry.store
    expected = _declared_length(request, MAX_BATCH_BYTES)
    if expected is None:  # chunked transfer encoding: no length to fill in place
        received, new = await _store_upload(store, await _body(request, MAX_BATCH_BYTES))
    else:  # received straight into a reused buffer: a fresh one per batch cost a page fault per 4 KiB
        with ctx.bodies.borrow(expected) as out:
            body = await receive_into(request, out)  # by the kernel, where the HTTP protocol can (server/protocol.py)
            if body is None:
                body = await _fill(request, MAX_BATCH_BYTES, out)
            received, new = await _store_upload(store, body)
    ctx.uploaded()
    return JSONResponse({"received": received, "new_bytes": new})


async def _store_upload(store, body: bytes | memoryview) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    data, chunks = _parse_upload(body)

    def put() -> tuple[int, int]:
        # a record per chunk and no cycles: the collector would walk every object
        # of the server several times per batch (see modelkeep/_gc.py)
        with collector_paused(), store.session() as session:
            new = session.put_chunks(data, chunks)
            session.commit()  # sealed before we answer: acknowledged chunks are durable
        return len(chunks), new

    # Not cancellable (anyio's default): the body stays borrowed until the thread is done with it.
    return await run_in_threadpool(put)


def _parse_upload(body: bytes | memoryview) -> tuple[memoryview, list[tuple[bytes, int, int, int]]]:
    """An upload body's chunk bytes and its table: (digest, length, elem, phase) per chunk."""
    view = memoryview(body)
    if len(view) < UP_COUNT.size:
        raise MalformedRequest("an upload body starts with its count of chunks")
    (count,) = UP_COUNT.unpack_from(view)
    start = UP_COUNT.size + count * UP_FRAME.size
    if start > len(view):
        raise MalformedRequest(f"truncated table: {count} chunks announced")
    chunks = list(UP_FRAME.iter_unpack(view[UP_COUNT.size : start]))
    total = 0
    for _, length, _, _ in chunks:
        if length > MAX_CHUNK:
            raise PayloadTooLarge(f"a chunk may hold at most {MAX_CHUNK} bytes, the table says {length}")
        total += length
    if total != len(view) - start:
        raise MalformedRequest(f"the table's chunks hold {total} bytes, the body {len(view) - start}")
    return view[start:], chunks


@router.post("/chunks/commit", summary="Make a version from uploaded chunks (role: contributor)")
async def commit(request: Request) -> JSONResponse:
    doc = await _json(request, MAX_MANIFEST_BYTES)
    name = _name(doc.pop("name", None))
    ctx, principal = await _caller(request, Role.CONTRIBUTOR, name)
    raw_manifest = doc.pop("manifest", None)
    if not isinstance(raw_manifest, dict):
        raise MalformedRequest('"manifest" must be a manifest object ({"format": 1, "files": [...]})')
    new_bytes = doc.pop("new_bytes", 0)
    if not isinstance(new_bytes, int) or new_bytes < 0:
        raise MalformedRequest('"new_bytes" must be a non-negative integer')
    manifest = Manifest.from_doc(raw_manifest)  # parsed once, with the body
    hints = {p.name: hint for p, hint in parameters("push") if p.name not in _COMMIT_SKIP}
    unknown = set(doc) - set(hints)
    if unknown:
        raise MalformedRequest(f"unknown arguments: {', '.join(sorted(unknown))}")
    args = {}
    for key, value in doc.items():
        try:
            args[key] = from_wire(hints[key], value)
        except InvalidInput as exc:
            raise MalformedRequest(f"argument {key}: {exc.message}") from None
    for key in ("derived_from", "trained_on", "evaluated_on", "contains", "variant_of"):
        refs = args.get(key)
        for ref in [refs] if isinstance(refs, str) else (refs or ()):
            principal.require(Role.VIEWER, namespace_for(VersionRef.parse(ref).artifact))
    registry = ctx.registry_for(principal)
    version = await run_in_threadpool(
        lambda: registry.commit_manifest(name, manifest, new_bytes=new_bytes, **args)
    )
    body = to_wire(version)
    ctx.dispatcher.emit(_PUSH.event, namespace_for(name), principal.user, body)
    return JSONResponse(body)


@router.get("/chunks/manifest", summary="The manifest of a version (role: viewer)")
async def manifest(request: Request, ref: str) -> Response:
    parsed = VersionRef.parse(ref)
    ctx, principal = await _caller(request, _PULL.role, parsed.artifact)
    registry = ctx.registry_for(principal)
    version, files = await run_in_threadpool(registry.manifest, str(parsed))
    body = json.dumps({"version": to_wire(version), "manifest": files.to_doc()})
    return Response(body, media_type="application/json")


class _ChunkSets:
    """Chunk digests of recently fetched versions: a pull asks about the same version many times."""

    def __init__(self, size: int = 8) -> None:
        self._sets: OrderedDict[str, frozenset[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, registry: Any, ref: str) -> frozenset[bytes]:
        key = str(registry.get(ref).files_digest)  # one indexed query; the manifest only on a miss
        with self._lock:
            found = self._sets.get(key)
            if found is not None:
                self._sets.move_to_end(key)
                return found
        _, files = registry.manifest(ref)
        found = frozenset(d.raw for d in files.chunk_digests())
        with self._lock:
            self._sets[key] = found
            while len(self._sets) > self._size:
                self._sets.popitem(last=False)
        return found


def _chunk_sets(request: Request) -> _ChunkSets:
    # Kept on the app, not the module: two apps in one process share nothing.
    state = request.app.state
    sets = getattr(state, "chunk_sets", None)
    if sets is None:
        sets = state.chunk_sets = _ChunkSets()
    return sets


@router.post("/chunks/fetch", summary="Download chunks of a version (role: viewer)")
async def fetch(request: Request) -> Response:
    doc = await _json(request, 1024 * 1024)
    ref = doc.get("ref")
    if not isinstance(ref, str):
        raise MalformedRequest('"ref" must name the version the chunks belong to')
    parsed = VersionRef.parse(ref)
    ctx, principal = await _caller(request, _PULL.role, parsed.artifact)
    digests = _digests(doc, MAX_FETCH)
    registry = ctx.registry_for(principal)
    store = ctx.registry.store
    sets = _chunk_sets(request)

    def read() -> bytes:
        allowed = sets.get(registry, str(parsed))
        out = bytearray()
        for d in digests:
            if d.raw not in allowed:
                raise InvalidInput(f"chunk {d} is not part of {parsed}")
            data = store.read_chunk(d)  # verified against its digest
            out += DOWN_FRAME.pack(d.raw, len(data))
            out += data
            if len(out) > MAX_BATCH_BYTES:
                raise PayloadTooLarge(f"asked for more than {MAX_BATCH_BYTES} bytes in one fetch")
        return bytes(out)

    return Response(await run_in_threadpool(read), media_type="application/octet-stream")
