"""The server lets its reused upload buffers go once uploads stop for a while."""

from __future__ import annotations

import os
import time
from pathlib import Path

from _servers import served

from modelkeep.registry.operations import Role
from modelkeep.store import packs
from modelkeep.store.buffers import BufferPool


def test_idle_upload_buffers_are_let_go_and_come_back_with_the_next_push(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(6_000_000))
    with served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", upload_buffers_idle_seconds=0.5) as srv:
        admin = srv.user("root", {"*": Role.ADMIN})
        ctx = srv.app.state.mk  # type: ignore[attr-defined]
        with srv.remote(admin) as reg:
            reg.push(src, "a/model")
            kept = len(ctx.bodies._free)
            assert kept >= 1  # kept for the next push
            (src / "w.bin").write_bytes(os.urandom(6_000_000))
            time.sleep(0.3)
            reg.push(src, "a/model")  # an upload within the idle time: the timer waits for the last one
            time.sleep(0.3)
            assert len(ctx.bodies._free) >= 1
            deadline = time.monotonic() + 5
            while ctx.bodies._free and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not ctx.bodies._free and not srv.registry.store.scratch._free
            assert not packs._Stage._free  # the pack staging buffers too
            (src / "w.bin").write_bytes(os.urandom(6_000_000))
            assert reg.push(src, "a/model").version == "1.2.0"
            assert len(ctx.bodies._free) >= 1


def test_trim_unmaps_idle_buffers_only() -> None:
    pool = BufferPool(keep=4)
    idle = pool.take(2 * 1024 * 1024)
    busy = pool.take(2 * 1024 * 1024)
    size = len(idle)
    pool.give(idle)
    assert pool.trim() == size and idle.closed
    assert not busy.closed  # in use: untouched
    pool.give(busy)
    assert pool.take(1024 * 1024) is busy  # given back after the trim: reused as usual
