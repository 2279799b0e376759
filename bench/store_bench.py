"""Chunk store and registry benchmark: ratios measured in one run on this machine.

    python bench/store_bench.py [--size-mib 1024] [--versions 10000] [--work DIR]

Builds a safetensors file of ~200 float32 tensors (weights ~ N(0, sigma) with a
per-layer sigma, like trained weights) and five fine-tuned variants that each
rewrite ~10% of the bytes as whole tensors; then measures, against `cp` and
`cp` + `sync` of the same file in the same run:

- push of the base, push of a variant, pull (each the median of 5 runs; every
  timed step, cp included, starts from the same state: see ``settle``);
- stored bytes after base + five variants, relative to the base size;
- peak RSS of a push and of a pull of the whole file, in a child process;
- store growth when 104 bytes are added to the header (every tensor shifted);
- on an artifact with N versions: resolve an alias, create a small version,
  list the newest 50 (medians, in process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import modelkeep  # noqa: E402

TARGETS = {
    "push_base_vs_cp_sync": 1.5,
    "push_variant_vs_cp_sync": 0.5,
    "pull_vs_cp": 1.5,
    "stored_vs_base": 1.40,
    "peak_rss_push_mb": 300,
    "peak_rss_pull_mb": 300,
    "header_shift_added_mb": 1.0,
    "resolve_alias_ms": 1.0,
    "create_small_version_ms": 5.0,
    "ls_newest_50_ms": 10.0,
}


# -- the workload -------------------------------------------------------------------


def layer_specs(total_bytes: int, n: int = 200, seed: int = 0) -> list[tuple[str, tuple[int, ...], float]]:
    """~n tensors whose sizes vary like a transformer's (big matrices, small norms)."""
    rng = np.random.default_rng(seed)
    weights = rng.choice([1.0, 1.0, 4.0, 4.0, 0.01], size=n)
    elems = (weights / weights.sum() * total_bytes / 4).astype(np.int64)
    specs = []
    for i, e in enumerate(elems):
        cols = 1024
        rows = max(1, int(e) // cols)
        sigma = float(rng.choice([0.02, 0.03, 0.05, 0.1]))
        specs.append((f"model.layers.{i // 4}.part{i % 4}.weight", (rows, cols), sigma))
    return specs


def write_model(path: Path, specs, seed: int, changed: set[int] = frozenset(), extra_meta: str = "") -> None:
    """Write a safetensors file tensor by tensor (never the whole model in memory)."""
    header = {}
    offset = 0
    for name, shape, _ in specs:
        nbytes = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt", "note": extra_meta}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for i, (_, shape, sigma) in enumerate(specs):
            rng = np.random.default_rng((0, i))
            arr = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
            if i in changed:  # a fine-tune: the same tensor, nudged
                delta = np.random.default_rng((seed, i)).standard_normal(shape, dtype=np.float32)
                arr += delta * np.float32(sigma * 0.05)
            f.write(arr.tobytes())


def pick_changed(specs, share: float, seed: int) -> set[int]:
    rng = np.random.default_rng(seed)
    sizes = [int(np.prod(s)) * 4 for _, s, _ in specs]
    total = sum(sizes)
    picked: set[int] = set()
    got = 0
    for i in rng.permutation(len(specs)):
        if got >= share * total:
            break
        if got + sizes[i] <= share * total * 1.15:
            picked.add(int(i))
            got += sizes[i]
    return picked


# -- measuring ------------------------------------------------------------------------


def sync() -> None:
    subprocess.run(["sync"], check=True)


WARM_BYTES = 3 << 30


def settle(scratch: Path, *inputs: Path) -> None:
    """Start a timed step from the same state as every other one.

    ``sync`` first, so no step pays for another's writeback. Then the step's input
    files are read (they are in the page cache, as a file just written or just
    used is; a memory reclaimer may have dropped them meanwhile). Last, 3 GiB are
    written to ``scratch`` and deleted: on this kind of VM, filling page cache
    from memory that has lain free for a while costs ~1-2 s of kernel time per
    GiB, against ~0.1 s from page cache just freed. Without this, that cost lands
    on whichever step first needs fresh page cache (cp and a pull each fill
    1 GiB), whatever tool runs it; with it, every step starts alike.
    """
    sync()
    buf = bytearray(8 * 1024 * 1024)
    for root in inputs:
        for p in [root] if root.is_file() else sorted(x for x in root.rglob("*") if x.is_file()):
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for off in range(0, WARM_BYTES, len(buf)):
            os.pwrite(fd, buf, off)
    finally:
        os.close(fd)
        os.unlink(scratch)
    sync()  # nothing of the scratch file may still be queued for writeback


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=True)
    return time.perf_counter() - t


_CHILD = r"""
import json, sys, time, modelkeep
op, home, a, b = sys.argv[1:5]
mk = modelkeep.open(home)
t = time.perf_counter()
if op == "push":
    v = mk.push(a, b, kind="model", message="bench")
    out = {"version": v.version, "new_bytes": v.new_bytes}
else:
    mk.pull(a, b)
    out = {}
out["seconds"] = time.perf_counter() - t
mk.close()
print(json.dumps(out))
"""


def run_child(op: str, home: Path, a: str, b: str) -> tuple[dict, float]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: reports on the pipe; wait4 gives its own peak RSS
        os.close(r)
        os.dup2(w, 1)
        os.execv(sys.executable, [sys.executable, "-c", _CHILD, op, str(home), a, b])
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{op} failed")
    return json.loads(out), usage.ru_maxrss / 1024


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        ap.error(f"--work {args.work} is not empty: give a new or empty folder (the workload is written there)")

    work = Path(args.work or tempfile.mkdtemp(prefix="mk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = bench(work, args)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'measure':32} {'value':>10}  {'target':>8}  verdict")
    ok_all = True
    for key, target in TARGETS.items():
        if key not in results:
            continue
        value = results[key]
        ok = value <= target
        ok_all &= ok
        print(f"{key:32} {value:10.3f}  {'<= ' + format(target, 'g'):>8}  {'ok' if ok else 'MISSED'}")
    return 0 if ok_all else 1


def bench(work: Path, args) -> dict[str, float]:
    size = args.size_mib * 1024 * 1024
    specs = layer_specs(size)
    print(f"workload: {len(specs)} float32 tensors, {size / 1e9:.2f} GB, in {work}")
    base = work / "base" / "model.safetensors"
    base.parent.mkdir()
    write_model(base, specs, seed=0)
    base_size = base.stat().st_size
    variants = []
    for k in range(1, 6):
        p = work / f"ft{k}" / "model.safetensors"
        p.parent.mkdir()
        changed = pick_changed(specs, 0.10, seed=k)
        write_model(p, specs, seed=k, changed=changed)
        variants.append(p)
    shifted = work / "shifted" / "model.safetensors"
    shifted.parent.mkdir()
    write_model(shifted, specs, seed=0, extra_meta="x" * 104)
    res: dict[str, float] = {}

    # cp and cp+sync of the same file, interleaved with our pushes
    cp_sync, cp_plain, push_base, pull, push_var = [], [], [], [], []
    rss_push = rss_pull = 0.0
    scratch = work / "settle.tmp"
    for run in range(args.runs):
        dst = work / "cp.out"
        settle(scratch, base)
        cp_sync.append(timed(f"cp {base} {dst} && sync", shell=True))
        dst.unlink()
        home = work / f"home{run}"
        shutil.rmtree(home, ignore_errors=True)
        settle(scratch, base)
        rep, rss = run_child("push", home, str(base), "bench/model")
        push_base.append(rep["seconds"])
        rss_push = max(rss_push, rss)
        settle(scratch, variants[0])
        rep, rss = run_child("push", home, str(variants[0]), "bench/model")
        push_var.append(rep["seconds"])
        settle(scratch, base)
        cp_plain.append(timed(["cp", str(base), str(dst)]))
        dst.unlink()
        settle(scratch, home)
        out = work / "pulled"
        shutil.rmtree(out, ignore_errors=True)
        rep, rss = run_child("pull", home, "bench/model@1.0.0", str(out))
        pull.append(rep["seconds"])
        rss_pull = max(rss_pull, rss)
        shutil.rmtree(out)
        if run < args.runs - 1:
            shutil.rmtree(home)
    cs, cp = median(cp_sync), median(cp_plain)
    print(f"cp+sync {cs:.2f}s  cp {cp:.2f}s  push base {median(push_base):.2f}s  "
          f"push variant {median(push_var):.2f}s  pull {median(pull):.2f}s")
    for label, xs in (("cp+sync", cp_sync), ("cp", cp_plain), ("push base", push_base),
                      ("push variant", push_var), ("pull", pull)):
        print(f"  {label:13} runs: " + " ".join(f"{x:.2f}" for x in xs))
    res["push_base_vs_cp_sync"] = median(push_base) / cs
    res["push_variant_vs_cp_sync"] = median(push_var) / cs
    res["pull_vs_cp"] = median(pull) / cp
    res["peak_rss_push_mb"] = rss_push
    res["peak_rss_pull_mb"] = rss_pull

    # space: base + five variants in the last home
    mk = modelkeep.open(home)
    for p in variants[1:]:
        mk.push(p, "bench/model", kind="model", message="fine-tune")
    du = mk.du()
    res["stored_vs_base"] = du.stored_bytes / base_size
    print(f"stored {du.stored_bytes / 1e9:.3f} GB for {du.logical_bytes / 1e9:.2f} GB logical "
          f"(6 versions of {base_size / 1e9:.2f} GB; dedup ratio {du.dedup_ratio:.2f}x)")
    before = du.stored_bytes
    mk.push(shifted, "bench/shifted-check", kind="model")
    res["header_shift_added_mb"] = (mk.du().stored_bytes - before) / 1e6
    mk.close()

    if args.versions:
        res.update(many_versions(work / "many", args.versions))
    return res


def many_versions(home: Path, n: int) -> dict[str, float]:
    mk = modelkeep.open(home)
    src = home.parent / "small"
    src.mkdir(exist_ok=True)
    f = src / "config.json"
    create = []
    t0 = time.perf_counter()
    for i in range(n):
        f.write_text(json.dumps({"lr": 0.001, "step": i}))
        t = time.perf_counter()
        mk.push(f, "bench/many", kind="config", message=f"step {i}")
        create.append(time.perf_counter() - t)
        if i == n // 2:
            mk.set_alias("bench/many", "production", "latest", reason="bench")
    print(f"{n} versions created in {time.perf_counter() - t0:.1f}s")
    resolve, ls = [], []
    for _ in range(300):
        t = time.perf_counter()
        mk.get("bench/many@production")
        resolve.append(time.perf_counter() - t)
    for _ in range(100):
        t = time.perf_counter()
        page = mk.versions("bench/many", limit=50)
        ls.append(time.perf_counter() - t)
    assert len(page) == 50
    mk.close()
    return {
        "resolve_alias_ms": median(resolve) * 1000,
        "create_small_version_ms": median(create) * 1000,
        "ls_newest_50_ms": median(ls) * 1000,
    }


if __name__ == "__main__":
    raise SystemExit(main())
