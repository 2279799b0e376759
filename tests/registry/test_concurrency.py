"""Several processes pushing to one artifact of one SQLite registry at the same time."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from modelkeep.config import Settings
from modelkeep.registry.embedded import EmbeddedRegistry

PROCESSES = 4
PUSHES = 5


def _pusher(args: tuple[str, int]) -> list[str]:
    home, worker = args
    settings = Settings.for_home(home, user=f"worker{worker}")
    made = []
    with EmbeddedRegistry(settings) as reg:
        src = Path(home) / f"src{worker}"
        src.mkdir()
        for i in range(PUSHES):
            (src / "w.bin").write_bytes(f"worker {worker} push {i}".encode() * 1000)
            made.append(reg.push(src, "team/race", message=f"{worker}/{i}").version)
    return made


def test_concurrent_pushes_from_processes_get_distinct_versions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # spawn: children start clean (no inherited threads, locks or connections)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        results = pool.map(_pusher, [(str(home), w) for w in range(PROCESSES)])
    made = [v for r in results for v in r]
    assert len(made) == PROCESSES * PUSHES
    assert len(set(made)) == PROCESSES * PUSHES, sorted(made)
    with EmbeddedRegistry(Settings.for_home(home, user="check")) as reg:
        listed = [v.version for v in reg.versions("team/race")]
        assert sorted(listed) == sorted(made)
        assert listed[-1] == "1.0.0" and listed[0] == f"1.{PROCESSES * PUSHES - 1}.0"
        assert {v.message for v in reg.versions("team/race")} == {f"{w}/{i}" for w in range(PROCESSES) for i in range(PUSHES)}


def test_concurrent_pushes_from_threads_on_every_database(db_url: str, tmp_path: Path) -> None:
    """Separate registries (own engine, own store handle) in threads: the artifact row lock path."""
    from concurrent.futures import ThreadPoolExecutor

    store_url = f"file://{tmp_path / 'store'}"
    EmbeddedRegistry(db_url, store_url, "setup").close()  # migrate once, like an installed registry

    def pusher(worker: int) -> list[str]:
        src = tmp_path / f"t{worker}"
        src.mkdir()
        made = []
        with EmbeddedRegistry(db_url, store_url, f"t{worker}") as reg:
            for i in range(PUSHES):
                (src / "w.bin").write_bytes(f"thread {worker} push {i}".encode())
                made.append(reg.push(src, "team/threads").version)
        return made

    with ThreadPoolExecutor(PROCESSES) as pool:
        made = [v for r in pool.map(pusher, range(PROCESSES)) for v in r]
    assert len(set(made)) == PROCESSES * PUSHES, sorted(made)
