"""S3-compatible backend (AWS S3, MinIO, R2, Ceph...) over boto3.

``s3://bucket/prefix``: objects live under ``prefix/`` in ``bucket``. Endpoint,
region and credentials come from boto3's usual sources (``AWS_ENDPOINT_URL``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/config``, instance roles); boto3 reads them
itself. ``?endpoint=http://host:port`` in the URL overrides the endpoint.

Requests are retried with backoff on 500/502/503/504, throttling and dropped
connections (botocore's ``standard`` retry mode). A pack above
``multipart_threshold`` goes up as a multipart upload; S3 makes a completed
upload visible at once and whole, which is the atomic put the protocol needs.

Locks are objects under ``locks/`` (S3 has no flock): see ``lock`` and
docs/storage-format.md.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from modelkeep.errors import ChunkNotFound, InvalidPath, InvalidURI, StorageError, StoreLocked
from modelkeep.store.backends.base import Backend, ObjectInfo

__all__ = ["S3Backend", "LOCK_STALE_SECONDS"]

log = logging.getLogger(__name__)

LOCK_STALE_SECONDS = 300.0
_WINDOWS = 8  # read windows kept (8 x 4 MiB)  # a lock object not refreshed for this long belongs to a dead process
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3Backend(Backend):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 8,
        multipart_threshold: int = 16 * 1024 * 1024,
        multipart_chunksize: int = 8 * 1024 * 1024,
        lock_stale_seconds: float = LOCK_STALE_SECONDS,
        lock_wait_seconds: float = 600.0,
        read_window: int = 4 * 1024 * 1024,
        temp_dir: str | None = None,
    ) -> None:
        if not bucket:
            raise InvalidURI("s3 URL without a bucket (expected s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = botocore.config.Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=32,
            # Checksums only where S3 requires them: S3-compatible servers (older
            # MinIO, R2, Ceph) reject the streamed CRC trailers sent by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._s3 = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise StorageError(f"cannot set up the S3 client for {self.url}: {exc}") from None
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
            use_threads=True,
        )
        self.lock_stale_seconds = lock_stale_seconds
        self.lock_wait_seconds = lock_wait_seconds
        self.read_window = read_window
        self._windows: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._windows_lock = threading.Lock()
        # Packs are written here before they go up. A folder of this user's own,
        # not the shared temp dir itself, so gc can sweep what killed pushes left.
        self._temp_dir = temp_dir or os.path.join(tempfile.gettempdir(), f"modelkeep-packs-{os.getuid()}")

    # -- naming ----------------------------------------------------------------

    def _key(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
            raise InvalidPath(f"bad object name {name!r}")
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def _fail(self, what: str, name: str, exc: Exception) -> StorageError | ChunkNotFound:
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                return ChunkNotFound(f"object {name} is missing from the store")
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.bucket!r} does not exist ({self.url})")
        return StorageError(f"S3 {what} of {name} in {self.url} failed: {exc}")

    # -- objects ---------------------------------------------------------------

    def put(self, name: str, data: bytes | memoryview) -> None:
        key = self._key(name)
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("upload", name, exc) from None

    def put_file(self, name: str, path: str) -> None:
        key = self._key(name)
        try:
            self._s3.upload_file(path, self.bucket, key, Config=self._transfer)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("upload", name, exc) from None
        except boto3.exceptions.S3UploadFailedError as exc:
            raise StorageError(f"S3 upload of {name} to {self.url} failed: {exc}") from None
        os.unlink(path)

    def local_temp_dir(self) -> str:
        path = self._temp_dir
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.lstat(path)
        except OSError as exc:
            raise StorageError(f"cannot create the folder for packs being written, {path}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise StorageError(f"{path} is not a folder of this user's; it holds packs being written")
        return path

    def sweep_incomplete(self, before: float) -> int:
        """Abort multipart uploads under the prefix begun before ``before``: a killed push's parts."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        aborted = 0
        try:
            pages = self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() < before:
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                        aborted += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("listing of unfinished uploads", prefix or "/", exc) from None
        return aborted

    def get(self, name: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("download", name, exc) from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length == 0:
            self.stat(name)  # an empty range is not expressible; still report a missing object
            return b""
        if length < self.read_window:
            # Chunks are read in pack order (a pull follows the file, which the
            # pack follows): one GET of a window serves the chunks after it too.
            # Objects are immutable, so a cached window never goes stale.
            start = offset - offset % self.read_window
            if offset + length <= start + self.read_window:
                window = self._window(name, start)
                data = window[offset - start : offset - start + length]
                if len(data) != length:
                    raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{length})")
                return data
        return self._get_range(name, offset, length)

    def _window(self, name: str, start: int) -> bytes:
        key = (name, start)
        with self._windows_lock:
            data = self._windows.get(key)
            if data is not None:
                self._windows.move_to_end(key)
                return data
        data = self._get_range(name, start, self.read_window, exact=False)
        with self._windows_lock:
            self._windows[key] = data
            while len(self._windows) > _WINDOWS:
                self._windows.popitem(last=False)
        return data

    def _get_range(self, name: str, offset: int, length: int, *, exact: bool = True) -> bytes:
        try:
            resp = self._s3.get_object(
                Bucket=self.bucket, Key=self._key(name), Range=f"bytes={offset}-{offset + length - 1}"
            )
            data = resp["Body"].read()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            if isinstance(exc, botocore.exceptions.ClientError) and _code(exc) == "InvalidRange":
                raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{length})") from None
            raise self._fail("download", name, exc) from None
        if exact and len(data) != length:
            raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{length})")
        return data

    def open_reader(self, name: str) -> BinaryIO:
        size = self.stat(name).size
        return io.BufferedReader(_RangeReader(self, name, size), buffer_size=1 << 20)  # type: ignore[return-value]

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except ChunkNotFound:
            return False
        return True

    def stat(self, name: str) -> ObjectInfo:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(name))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("stat", name, exc) from None
        return ObjectInfo(name, int(head["ContentLength"]), head["LastModified"].timestamp())

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(self._name(obj["Key"]), int(obj["Size"]), obj["LastModified"].timestamp())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("listing", prefix or "/", exc) from None

    def delete(self, name: str) -> None:
        with self._windows_lock:
            for key in [k for k in self._windows if k[0] == name]:
                del self._windows[key]
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            err = self._fail("delete", name, exc)
            if not isinstance(err, ChunkNotFound):
                raise err from None

    # -- locks -----------------------------------------------------------------

    @contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        """Both write, then check (docs/storage-format.md, "Locks on object storage").

        A push writes ``locks/push.<id>.lock`` then looks for a live ``locks/gc.*.lock``;
        gc writes ``locks/gc.<id>.lock`` then looks for any other live lock. Whichever
        writes second sees the first, so a push and gc never both proceed. A lock
        object is refreshed every third of the stale timeout while held; one not
        refreshed for ``lock_stale_seconds`` (judged on the server's clock, by
        comparing LastModified times) belongs to a dead process and is ignored.
        """
        kind = "gc" if exclusive else "push"
        # "push." / "gc." then ".lock": never confused with locks/gc-generation
        name = f"locks/{kind}.{uuid.uuid4().hex}.lock"
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.2
        while True:
            mine = self._write_lock(name)
            blockers = self._live_locks(name, mine, ("push.", "gc.") if exclusive else ("gc.",))
            if not blockers:
                break
            self.delete(name)
            if exclusive:
                raise StoreLocked(
                    "a push is in progress on this store; gc will not run now",
                    hint="run gc again when the push has finished",
                )
            if time.monotonic() > deadline:  # pushes wait for a running gc, within reason
                raise StoreLocked(f"gc has held the store for over {self.lock_wait_seconds:.0f} s ({blockers[0]})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(name, stop), name="mk-s3-lock", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            self.delete(name)

    def _write_lock(self, name: str) -> float:
        body = json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "time": time.time()}).encode()
        self.put(name, body)
        return self.stat(name).mtime

    def _live_locks(self, mine_name: str, mine_mtime: float, kinds: tuple[str, ...]) -> list[str]:
        out = []
        for info in self.list("locks/"):
            base = info.name.rsplit("/", 1)[-1]
            if info.name == mine_name or not base.startswith(kinds) or not base.endswith(".lock"):
                continue
            if info.mtime < mine_mtime - self.lock_stale_seconds:
                continue  # not refreshed for too long: its holder died
            out.append(info.name)
        return out

    def _heartbeat(self, name: str, stop: threading.Event) -> None:
        while not stop.wait(self.lock_stale_seconds / 3):
            try:
                self._write_lock(name)
            except (StorageError, ChunkNotFound) as exc:
                # the next beat tries again; only a silence of the whole stale timeout loses the lock
                log.warning("cannot refresh lock %s: %s", name, exc)

    def close(self) -> None:
        self._s3.close()


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _RangeReader(io.RawIOBase):
    """A seekable reader of one object through ranged GETs."""

    def __init__(self, backend: S3Backend, name: str, size: int) -> None:
        self._b = backend
        self._name = name
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._b.get_range(self._name, self._pos, n)
        buf[:n] = data
        self._pos += n
        return n


def parse_url(url: str) -> S3Backend:
    """``s3://bucket/prefix[?endpoint=http://host:port]``."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    unknown = set(query) - {"endpoint"}
    if unknown:
        raise InvalidURI(f"unknown s3 URL option(s) {', '.join(sorted(unknown))} in {url!r} (known: endpoint)")
    endpoint = query.get("endpoint", [None])[0]
    return S3Backend(parts.netloc, parts.path.strip("/"), endpoint_url=endpoint)
