"""ML benchmarks: tensor diff against reading both files once; impact over many indexed datasets.

    python bench/ml_bench.py                     # 1 GiB weights, 100 datasets of 1M rows
    python bench/ml_bench.py --size-mib 64 --datasets 10 --rows 100000   # quick

Targets (issue 5):
  tensor diff of two 1 GiB safetensors versions <= 2x the time to read both files once
  impact over 100 dataset versions of 1M rows each <= 1 s

Tensor diff. Version B rewrites every tensor of version A (the worst case: every
byte must be read and compared), and a second B' rewrites 10 % of the tensors (a
typical fine-tune). The diff reads straight from the chunk store. "Read both
files once" is measured two ways: reading both versions' bytes out of the
store (what any diff must do at least once: decode + verify every chunk), and a
plain read() of both files from local disk after pulling them (page cache
dropped is not possible without root, so that number is a warm-cache floor).

Impact. The datasets' key indexes are built straight from numpy arrays of
integer keys with the same encoder ``push_dataset`` uses
(``hash_keys`` + ``encode_key_index``): writing and re-parsing 100 CSV files
of a million rows would measure the CSV parser, not the query. Each version is
a tiny data file plus its index file, pushed with the ``params["dataset"]``
record push_dataset writes. Consecutive versions share 90 % of their keys.
A few models are trained on some versions, one fine-tune derives from one, a
bundle contains it and a variant is made of it, so the lineage walk is real.
The query is timed cold (a newly opened registry, as in a new process: the
store's chunk index is loaded, then each version's index header and fence
keys and one 32 KiB block of hashes are read from the chunk store) and warm
(headers cached in the process).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modelkeep.config import Settings
from modelkeep.ml.compare import _tensor_diffs
from modelkeep.ml.datasets import encode_key_index, hash_keys, key_index_path
from modelkeep.ml.impact import KeyIndexCache, impact
from modelkeep.ml._versionfiles import entry_of, manifest_of
from modelkeep.ml.tensordiff import ChunkSource
from modelkeep.registry.embedded import EmbeddedRegistry


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def bench_tensordiff(home: Path, size_mib: int) -> dict[str, float]:
    reg = EmbeddedRegistry(Settings.for_home(home / "reg"))
    try:
        n_tensors = max(4, size_mib // 16)
        per = size_mib * 1024 * 1024 // 4 // n_tensors
        rng = np.random.default_rng(1)
        a = {f"layers.{i}.weight": (rng.standard_normal(per, dtype=np.float32) * 0.02) for i in range(n_tensors)}
        for d in ("a", "b", "c"):
            (home / d).mkdir()
        _write_safetensors(home / "a" / "model.safetensors", a)
        b = {k: v + np.float32(1e-3) * rng.standard_normal(per, dtype=np.float32) for k, v in a.items()}
        _write_safetensors(home / "b" / "model.safetensors", b)
        del b
        c = {k: (v + np.float32(1e-3) if i % 10 == 0 else v) for i, (k, v) in enumerate(a.items())}
        _write_safetensors(home / "c" / "model.safetensors", c)
        del a, c
        va = reg.push(home / "a", "w", kind="model")
        vb = reg.push(home / "b", "w", kind="model")
        vc = reg.push(home / "c", "w-ft", kind="model", derived_from=va.ref)
        size = sum(s for _, s in reg.files(va.ref))

        def read_store(ref: str) -> None:
            found = manifest_of(reg, ref)
            assert found is not None
            entry = entry_of(found[1], "model.safetensors")
            assert entry is not None
            src = ChunkSource(reg.store, entry)
            step = 16 * 1024 * 1024
            for off in range(0, src.size, step):
                src.read(off, min(step, src.size - off))

        t = time.perf_counter()
        read_store(va.ref)
        read_store(vb.ref)
        t_store = time.perf_counter() - t

        pa, pb = home / "pa", home / "pb"
        reg.pull(va.ref, pa)
        reg.pull(vb.ref, pb)
        t = time.perf_counter()
        for p in (pa / "model.safetensors", pb / "model.safetensors"):
            with open(p, "rb") as f:
                while f.read(16 * 1024 * 1024):
                    pass
        t_disk = time.perf_counter() - t

        t = time.perf_counter()
        d_all = _tensor_diffs(reg, va.ref, vb.ref, ["model.safetensors"])["model.safetensors"]
        t_all = time.perf_counter() - t
        t = time.perf_counter()
        d_ft = _tensor_diffs(reg, va.ref, vc.ref, ["model.safetensors"])["model.safetensors"]
        t_ft = time.perf_counter() - t
        assert len(d_all.changed) == n_tensors
        assert len(d_ft.changed) == (n_tensors + 9) // 10
        return {
            "file_mib": size / 2**20,
            "read_store": t_store,
            "read_disk": t_disk,
            "diff_all": t_all,
            "diff_ft": t_ft,
            "ft_bytes_read_mib": d_ft.bytes_read / 2**20,
        }
    finally:
        reg.close()


def bench_impact(home: Path, n_datasets: int, rows: int) -> dict[str, float]:
    reg = EmbeddedRegistry(Settings.for_home(home / "reg"))
    try:
        rng = np.random.default_rng(2)
        keys = rng.choice(np.int64(50) * rows, size=rows, replace=False).astype(np.int64)
        stage = home / "stage"
        index_rel = key_index_path("customer_id")
        t_build = 0.0
        refs = []
        for i in range(n_datasets):
            # each version keeps 90 % of the previous keys and brings 10 % new ones
            if i:
                fresh = rng.integers(0, np.int64(50) * rows, size=rows // 10, dtype=np.int64)
                keys = np.concatenate([keys[rows // 10 :], fresh])
            t = time.perf_counter()
            blob = encode_key_index("customer_id", "int", hash_keys(keys, "int"), rows=rows, unique=False)
            t_build += time.perf_counter() - t
            (stage / index_rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / index_rel).write_bytes(blob)
            (stage / "part.csv").write_text(f"customer_id,amount\n{int(keys[0])},{i}\n")
            info = {
                "format": "directory",
                "rows": rows,
                "columns": {"customer_id": "int64", "amount": "float64"},
                "keys": {"customer_id": {"index": index_rel, "distinct": int(rows), "unique": False, "scheme": "int"}},
            }
            v = reg.push(stage, "transactions", kind="dataset", params={"dataset": info})
            refs.append(v.ref)
        probe = str(int(keys[-1]))  # in the last version (and the ones before while it survived)
        for j, r in enumerate(refs[-3:]):
            m = reg.push(_blob(home, f"m{j}"), "fraud", kind="model", trained_on=r)
        ft = reg.push(_blob(home, "ft"), "fraud-ft", kind="model", derived_from=m.ref)
        reg.push(_blob(home, "bundle"), "system", kind="bundle", contains=ft.ref)
        reg.push(_blob(home, "int8"), "fraud-int8", kind="model", variant_of=ft.ref)

        # a new registry object, as in a new process: the store's chunk index is loaded again, lazily
        reg.close()
        reg = EmbeddedRegistry(Settings.for_home(home / "reg"))
        t = time.perf_counter()
        report = impact(reg, "transactions", "customer_id", probe, cache=KeyIndexCache())
        t_cold = time.perf_counter() - t
        warm = KeyIndexCache()
        impact(reg, "transactions", "customer_id", probe, cache=warm)
        t = time.perf_counter()
        report2 = impact(reg, "transactions", "customer_id", probe, cache=warm)
        t_warm = time.perf_counter() - t
        index_mib = len(blob) / 2**20
        assert report.containing == report2.containing and report.containing
        return {
            "datasets": n_datasets,
            "rows": rows,
            "containing": len(report.containing),
            "affected": len(report.affected),
            "build_s": t_build,
            "cold": t_cold,
            "warm": t_warm,
            "index_mib": index_mib,
        }
    finally:
        reg.close()


def _blob(home: Path, name: str) -> Path:
    p = home / f"{name}.bin"
    p.write_bytes(os.urandom(1024))
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each safetensors file (default 1024)")
    ap.add_argument("--datasets", type=int, default=100, help="dataset versions for impact (default 100)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows (keys) per dataset version (default 1M)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary folder)")
    ap.add_argument("--skip-tensors", action="store_true")
    ap.add_argument("--skip-impact", action="store_true")
    args = ap.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="mk-mlbench-", dir=args.dir) as tmp:
        root = Path(tmp)
        if not args.skip_tensors:
            (root / "t").mkdir()
            r = bench_tensordiff(root / "t", args.size_mib)
            ratio_store = r["diff_all"] / r["read_store"]
            ratio_disk = r["diff_all"] / r["read_disk"]
            print(f"tensor diff, two {r['file_mib']:.0f} MiB safetensors versions")
            print(f"  read both files once from the store   {r['read_store']:8.3f} s")
            print(f"  read both pulled files from disk       {r['read_disk']:8.3f} s  (warm page cache)")
            print(f"  diff, every tensor changed             {r['diff_all']:8.3f} s  "
                  f"= {ratio_store:.2f}x store read (target <= 2x), {ratio_disk:.2f}x disk read")
            print(f"  diff, 10 % of tensors changed          {r['diff_ft']:8.3f} s  "
                  f"= {r['diff_ft'] / r['read_store']:.2f}x store read; read {r['ft_bytes_read_mib']:.0f} MiB")
            met = ratio_store <= 2.0
            ok &= met
            print(f"  target met: {'yes' if met else 'NO'}")
        if not args.skip_impact:
            (root / "i").mkdir()
            r = bench_impact(root / "i", args.datasets, args.rows)
            print(f"impact, {r['datasets']} dataset versions of {r['rows']:,} keys "
                  f"(found in {r['containing']}, {r['affected']} downstream versions)")
            print(f"  index build (hash + sort, all versions) {r['build_s']:8.3f} s")
            print(f"  first query in a process (nothing cached)  {r['cold']:8.3f} s  (target <= 1 s)")
            print(f"  next query (index headers cached)          {r['warm']:8.3f} s")
            print(f"  each index file: {r['index_mib']:.1f} MiB; a lookup reads one 32 KiB block of it")
            met = r["cold"] <= 1.0
            ok &= met
            print(f"  target met: {'yes' if met else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
