"""Governance benchmark: promotion with a policy, audit verification, time travel on aliases.

    python bench/governance_bench.py [--events 100000] [--moves 10000] [--promotions 60] [--db URL]

Measured in one run, on an embedded registry (SQLite in a temporary folder by
default; ``--db postgresql://...`` for an empty PostgreSQL database):

- evaluate a policy and promote: ``Registry.promote`` of a candidate in
  validation, under a policy with four rules, two required metrics and a
  trained_on requirement, against the current production version (each call
  reads the production snapshot, locks the artifact, evaluates, moves the
  stage and the alias, archives the previous version and appends four audit
  events); median over ``--promotions`` calls;
- ``audit verify`` over ``--events`` events: the events are appended through
  the real ``audit.record`` path, 2,000 per transaction (a batch, so setting up
  100,000 takes seconds rather than one commit each), then
  ``Registry.audit_verify()`` re-hashes the whole chain; median of 3;
- ``alias at`` on an alias with ``--moves`` moves (made by ``aliases.move``, the
  path ``set_alias`` takes, 2,000 per transaction): median of 300 calls at
  random past instants.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelkeep.db.models import utcnow  # noqa: E402
from modelkeep.registry import aliases as _aliases  # noqa: E402
from modelkeep.registry import audit as _audit  # noqa: E402
from modelkeep.registry import versions as _versions  # noqa: E402
from modelkeep.registry.embedded import EmbeddedRegistry  # noqa: E402

TARGETS = {"promote_ms": 20.0, "audit_verify_s": 2.0, "alias_at_ms": 2.0}
BATCH = 2000

POLICY = """\
rules:
  - accuracy >= production.accuracy - 0.005
  - latency_p95_ms <= 1.10 * production.latency_p95_ms
  - auc > 0.5 and not (loss > 1.0)
  - candidate.accuracy - production.accuracy > -0.01 or auc >= production.auc
required_metrics: [accuracy, latency_p95_ms]
require_trained_on: true
previous_production: archive
"""


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_promote(reg: EmbeddedRegistry, work: Path, n: int) -> dict[str, float]:
    src = work / "model"
    src.mkdir()
    data = work / "data"
    data.mkdir()
    (data / "rows.csv").write_text("x,y\n1,2\n")
    dataset = reg.push(data, "bench/transactions", kind="dataset").ref
    for i in range(n + 1):
        (src / "w.bin").write_bytes(f"weights {i}".encode() * 64)
        metrics = {"accuracy": 0.80 + i * 0.001, "latency_p95_ms": 20.0, "auc": 0.9, "loss": 0.3}
        v = reg.push(src, "bench/fraud", kind="model", metrics=metrics, trained_on=dataset).ref
        reg.transition(v, "staging")
        reg.transition(v, "validation")
    reg.promote("bench/fraud@1.0.0", reason="baseline")
    reg.set_policy("bench/fraud", POLICY, reason="bench")
    promote, check = [], []
    for i in range(1, n + 1):
        ref = f"bench/fraud@1.{i}.0"
        t0 = time.perf_counter()
        report = reg.check_policy(ref)
        t1 = time.perf_counter()
        t = reg.promote(ref, reason="bench")
        t2 = time.perf_counter()
        assert report.passed and t.report is not None and t.report.passed, t.report
        check.append(t1 - t0)
        promote.append(t2 - t1)
    assert reg.audit_verify().ok
    return {"promote_ms": _median_ms(promote), "check_policy_ms": _median_ms(check)}


def bench_verify(reg: EmbeddedRegistry, events: int) -> dict[str, float]:
    have = len(reg.audit_log())
    todo = max(0, events - have)
    start = utcnow()
    t0 = time.perf_counter()
    done = 0
    while done < todo:
        k = min(BATCH, todo - done)

        def append(db, base=done, k=k):  # type: ignore[no-untyped-def]
            for j in range(k):
                _audit.record(
                    db,
                    action="bench.event",
                    actor="bench",
                    artifact="bench/fraud",
                    subject=f"bench/fraud@1.{(base + j) % 50}.0",
                    reason="synthetic",
                    data={"n": base + j, "score": 0.5},
                    at=start + timedelta(microseconds=base + j),
                )

        reg._uow.write(append)
        done += k
    setup = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        report = reg.audit_verify()
        times.append(time.perf_counter() - t0)
        assert report.ok, report.problem
    return {
        "audit_events": float(report.events_checked),
        "audit_append_us": setup / max(todo, 1) * 1e6,
        "audit_verify_s": statistics.median(times),
    }


def bench_alias_at(reg: EmbeddedRegistry, moves: int) -> dict[str, float]:
    start = utcnow() - timedelta(days=30)
    step = timedelta(seconds=60)
    done = 0
    while done < moves:
        k = min(BATCH, moves - done)

        def move(db, base=done, k=k):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, "bench/fraud", lock=True)
            rows = _versions.page(db, art.id, limit=20, offset=0)
            for j in range(k):
                n = base + j
                _aliases.move(
                    db, art, "champion", rows[n % len(rows)], expected=None, actor="bench", at=start + n * step, reason=""
                )

        reg._uow.write(move)
        done += k
    assert len(reg.alias_history("bench/fraud", "champion")) >= moves
    rng = random.Random(7)
    times = []
    for _ in range(300):
        when = start + timedelta(seconds=rng.uniform(0, moves * 60))
        t0 = time.perf_counter()
        version = reg.alias_at("bench/fraud", "champion", when)
        times.append(time.perf_counter() - t0)
        assert version is not None
    return {"alias_at_ms": _median_ms(times), "alias_moves": float(moves)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--moves", type=int, default=10_000)
    ap.add_argument("--promotions", type=int, default=60)
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mk-govbench-") as tmp:
        work = Path(tmp)
        db = args.db or f"sqlite:///{work / 'registry.db'}"
        with EmbeddedRegistry(db, f"file://{work / 'store'}", "bench") as reg:
            results: dict[str, float] = {}
            results.update(bench_promote(reg, work, args.promotions))
            results.update(bench_alias_at(reg, args.moves))
            results.update(bench_verify(reg, args.events))
    rows = [
        ("evaluate a policy and promote (median)", f"{results['promote_ms']:.2f} ms", f"<= {TARGETS['promote_ms']:g} ms",
         results["promote_ms"] <= TARGETS["promote_ms"]),
        ("  of which: check_policy alone (median)", f"{results['check_policy_ms']:.2f} ms", "", None),
        (f"audit verify over {int(results['audit_events']):,} events (median of 3)", f"{results['audit_verify_s']:.2f} s",
         f"<= {TARGETS['audit_verify_s']:g} s", results["audit_verify_s"] <= TARGETS["audit_verify_s"]),
        ("  appending one event (batched setup)", f"{results['audit_append_us']:.0f} us", "", None),
        (f"alias at, alias with {int(results['alias_moves']):,} moves (median)", f"{results['alias_at_ms']:.3f} ms",
         f"<= {TARGETS['alias_at_ms']:g} ms", results["alias_at_ms"] <= TARGETS["alias_at_ms"]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"database: {'PostgreSQL' if args.db and args.db.startswith('postgres') else 'SQLite'}")
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{name:<{width}}  {value:>10}  {target:<10} {verdict}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
