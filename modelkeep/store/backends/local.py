"""Directory backend: objects are files under a root; writes are atomic and durable."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from modelkeep.errors import ChunkNotFound, InvalidPath, StorageError, StoreLocked
from modelkeep.store.atomic import atomic_write, durable_rename
from modelkeep.store.backends.base import Backend, ObjectInfo

__all__ = ["LocalBackend"]

_MAX_OPEN = 64


class LocalBackend(Backend):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = f"file://{self.root}"
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            (self.root / "locks").mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create store folder {self.root}: {exc.strerror}") from None
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
            raise InvalidPath(f"bad object name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes | memoryview) -> None:
        with atomic_write(self._path(name)) as f:
            f.write(data)

    def put_file(self, name: str, path: str) -> None:
        final = self._path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        src = Path(path)
        if src.parent.resolve().is_relative_to(self.root.resolve()):
            durable_rename(src, final)
        else:  # a file on another filesystem: copy through a durable temp
            with atomic_write(final) as f, open(src, "rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)
            src.unlink()

    def _fd(self, name: str) -> int:
        with self._fd_lock:
            fd = self._fds.get(name)
            if fd is not None:
                self._fds.move_to_end(name)
                return fd
            try:
                fd = os.open(self._path(name), os.O_RDONLY)
            except FileNotFoundError:
                raise ChunkNotFound(f"object {name} is missing from the store") from None
            self._fds[name] = fd
            while len(self._fds) > _MAX_OPEN:
                _, old = self._fds.popitem(last=False)
                os.close(old)
            return fd

    def _forget_fd(self, name: str) -> None:
        with self._fd_lock:
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise ChunkNotFound(f"object {name} is missing from the store") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        data = os.pread(self._fd(name), length, offset)
        if len(data) != length:
            raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{length})")
        return data

    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        fd = self._fd(name)
        got = 0
        while got < len(view):  # into the caller's buffer: no fresh memory per read
            n = os.preadv(fd, [view[got:]], offset + got)
            if not n:
                raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{len(view)})")
            got += n

    def will_read(self, name: str, offset: int, length: int) -> None:
        # The kernel starts reading what is not in the page cache yet, so a pull
        # of packs that are not cached waits for the disk once, not per run.
        try:
            os.posix_fadvise(self._fd(name), offset, length, os.POSIX_FADV_WILLNEED)
        except (OSError, ChunkNotFound, AttributeError):  # a hint: a pack gone or no fadvise here
            pass

    def open_reader(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise ChunkNotFound(f"object {name} is missing from the store") from None

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            raise ChunkNotFound(f"object {name} is missing from the store") from None
        return ObjectInfo(name, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        top = prefix.split("/", 1)[0]
        base = self.root / top
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for fn in files:
                if fn.startswith("."):  # temp files of writers in progress
                    continue
                full = Path(dirpath) / fn
                name = full.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    try:
                        st = full.stat()
                    except FileNotFoundError:
                        continue
                    yield ObjectInfo(name, st.st_size, st.st_mtime)

    def delete(self, name: str) -> None:
        self._forget_fd(name)
        self._path(name).unlink(missing_ok=True)

    def local_temp_dir(self) -> str | None:
        return str(self.root / "tmp")

    @contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        # flock: shared for pushes, exclusive for gc. The kernel drops it when the
        # process dies, so a killed push never leaves the store locked.
        fd = os.open(self.root / "locks" / "store.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                if exclusive:
                    raise StoreLocked(
                        "a push is in progress on this store; gc will not run now",
                        hint="run gc again when the push has finished",
                    ) from None
                fcntl.flock(fd, fcntl.LOCK_SH)  # pushes wait for a running gc
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
