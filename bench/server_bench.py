"""Server benchmark: modelkeep's server (and MLflow's, when installed) measured in one run on this machine.

    python bench/server_bench.py [--size-mib 1024] [--seconds 5] [--work DIR] [--auth]

Everything runs on 127.0.0.1; every load loop is bounded in time and count and
stops by itself. Prints:

- server start time (until /healthz answers) and its RSS once warm;
- resolve an alias (``GET /api/v1/version?ref=name@production``): requests/s
  and p99 at 32 connections, p50 with a single client; once more with
  ``mk server --workers N`` (``--workers``, default 2; MLflow runs four) (the same load generator
  against MLflow's ``get-model-version-by-alias`` when ``mlflow`` is importable);
  with ``--auth`` the server checks a bearer token on every request (as in
  production) instead of running with ``--no-auth``;
- remote push of a ``--size-mib`` safetensors over loopback against a local
  (embedded) push of the same file: ``--push-runs`` interleaved runs of each
  (median), every remote one to a new server with its own database and store
  (warmed by one small push, as a running server is), every local one into a
  new home;
- a variant (~10% of the tensors fine-tuned) pushed remotely: bytes sent
  against the bytes of its new chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import modelkeep  # noqa: E402
from modelkeep.client import transfer  # noqa: E402
from modelkeep.client._http import Http  # noqa: E402
from store_bench import layer_specs, pick_changed, write_model  # noqa: E402

TARGETS = {
    "alias_rps_vs_mlflow": 10.0,
    "alias_p50_single_ms": 5.0,
    "alias_p99_32_ms": 50.0,
    "start_s": 2.0,
    "rss_mb": 150.0,
    "remote_push_vs_local": 2.0,
    "variant_sent_vs_new_chunks": 1.15,
}
MAX_REQUESTS = 200_000  # hard bound of one load run, whatever the duration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summed_kb(pid: int, file: str, field: str) -> float:
    """``field`` (kB) of /proc/<pid>/``file``, summed over the process and its children, in MB."""
    total = 0
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid, *map(int, kids)]:
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB)."""
    return _summed_kb(pid, "status", "VmRSS:")


def pss_mb(pid: int) -> float:
    """Proportional memory of a process and its children (MB): shared pages counted once in all."""
    return _summed_kb(pid, "smaps_rollup", "Pss:")


def wait_up(url: str, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the processes of process group ``pgid``."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(pgid: int, timeout: float) -> float:
    """Wait until process group ``pgid`` uses under a tenth of a core over a second; the seconds waited."""
    t0 = time.perf_counter()
    prev = group_cpu_s(pgid)
    while time.perf_counter() - t0 < timeout:
        time.sleep(1.0)
        cur = group_cpu_s(pgid)
        if cur - prev < 0.1:
            break
        prev = cur
    return time.perf_counter() - t0


def load(
    url: str, params: dict, connections: int, seconds: float, headers: dict[str, str] | None = None
) -> tuple[float, list[float]]:
    """``connections`` keep-alive HTTP/1.1 connections on one asyncio loop, for ``seconds``.

    Requests are pre-built bytes and answers are read by Content-Length only: a
    generator this thin leaves the CPU to the server, where httpx in 32 threads
    would measure itself. Bounded by time and by MAX_REQUESTS.
    """
    parts = urlsplit(url)
    target = parts.path + ("?" + urlencode(params) if params else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n{extra}\r\n".encode()
    host, port = parts.hostname, parts.port
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(stop_at: float, budget: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(budget):
                if time.perf_counter() >= stop_at:
                    break
                t = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                    return
        finally:
            writer.close()
            await writer.wait_closed()

    async def run() -> float:
        stop_at = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(stop_at, MAX_REQUESTS // connections) for _ in range(connections)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    if errors:
        raise RuntimeError(errors[0])
    return len(latencies) / elapsed, latencies


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def alias_load(
    name: str, url: str, params: dict, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, float]:
    load(url, params, 4, 0.5, headers)  # warm up
    rps, lat32 = load(url, params, 32, seconds, headers)
    _, lat1 = load(url, params, 1, min(seconds, 3.0), headers)
    out = {"rps_32": rps, "p99_32_ms": pct(lat32, 0.99), "p50_32_ms": pct(lat32, 0.5), "p50_single_ms": pct(lat1, 0.5)}
    print(
        f"  {name:10s} resolve alias: {rps:8.0f} req/s at 32 connections, p99 {out['p99_32_ms']:.1f} ms; "
        f"single client p50 {out['p50_single_ms']:.2f} ms"
    )
    return out


def server_cmd(port: int, db: str, store: str, auth: bool) -> list[str]:
    return [sys.executable, "-m", "modelkeep", "server", "--host", "127.0.0.1", "--port", str(port),
            "--db", db, "--store", store, "--log-level", "warning"] + ([] if auth else ["--no-auth"])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_workers(db: str, store: str, args: argparse.Namespace, headers: dict[str, str] | None) -> dict[str, float]:
    """Alias resolution against ``mk server --workers N`` on the same database: throughput and memory."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = server_cmd(port, db, store, args.auth) + ["--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        start = wait_up(f"{base}/healthz", proc, 60)
        settle(proc.pid, 30)  # every worker up
        print(f"modelkeep server --workers {args.workers}:")
        print(f"  started in {start:.2f} s")
        out = alias_load("modelkeep", f"{base}/api/v1/version", {"ref": "bench/model@production"}, args.seconds, headers)
        out["rss_mb"], out["pss_mb"] = rss_mb(proc.pid), pss_mb(proc.pid)
        print(f"  memory after the load: RSS {out['rss_mb']:.0f} MB summed over its processes, PSS {out['pss_mb']:.0f} MB")
        return out
    finally:
        stop(proc)


def timed_remote_push(work: Path, src: Path, warm: Path) -> float:
    """Seconds to push ``src`` over loopback to a new server (its own database and store), warmed by pushing ``warm``."""
    work.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = server_cmd(port, f"sqlite:///{work / 'server.db'}", f"file://{work / 'store'}", auth=False)
    log = work / "server.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_up(f"{base}/healthz", proc, 60, log)
        http = Http(base)
        try:
            transfer.push_files(http, warm, "bench/warm", kind="model", message="warm")
            t = time.perf_counter()
            transfer.upload(http, src, "bench/llm", kind="model", message="remote")
            return time.perf_counter() - t
        finally:
            http.close()
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def bench_modelkeep(work: Path, args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = f"sqlite:///{work / 'server.db'}"
    store = f"file://{work / 'server-store'}"
    cmd = server_cmd(port, db, store, args.auth)
    # First start: creates the database (migrations); second start: an existing one, as a restart.
    log = work / "server.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        results["first_start_s"] = wait_up(f"{base}/healthz", proc, 60, log)
    finally:
        proc.terminate()
        proc.wait(20)
    token = None
    if args.auth:  # an admin and its token, in the database the first start created
        token = subprocess.run([sys.executable, "-m", "modelkeep", "server", "create-admin", "bench", "--db", db],
                               capture_output=True, text=True, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        results["start_s"] = wait_up(f"{base}/healthz", proc, 60, log)
        http = Http(base, token=token)
        try:
            # a small artifact with an alias to resolve
            small = work / "small"
            small.mkdir()
            (small / "config.json").write_text('{"layers": 2}')
            v = transfer.push_files(http, small, "bench/model", kind="model", message="bench")
            http.request("PUT", "/api/v1/aliases", json={"name": "bench/model", "alias": "production", "version": v.version})
            print("modelkeep server:" + (" (every request with a bearer token)" if token else " (--no-auth)"))
            print(f"  started in {results['start_s']:.2f} s ({results['first_start_s']:.2f} s the first time, creating its database)")
            a = alias_load("modelkeep", f"{base}/api/v1/version", {"ref": "bench/model@production"}, args.seconds, headers)
            results.update({f"alias_{k}": val for k, val in a.items()})
            results["rss_mb"] = rss_mb(proc.pid)
            print(f"  RSS after the load: {results['rss_mb']:.0f} MB")
            if args.workers > 1:
                results.update({f"workers_{k}": val for k, val in bench_workers(db, store, args, headers).items()})

            # remote push over loopback vs local push of the same file: interleaved
            # runs, each into a new local home and a new server (its own database
            # and store: a second push of the same bytes would send nothing)
            specs = layer_specs(args.size_mib * 1024 * 1024)
            model = work / "base" / "model.safetensors"
            model.parent.mkdir()
            write_model(model, specs, seed=0)
            size = model.stat().st_size
            local_runs, remote_runs = [], []
            for i in range(args.push_runs):
                subprocess.run(["sync"], check=True)
                with modelkeep.open(work / f"local-{i}") as reg:
                    t = time.perf_counter()
                    reg.push(model.parent, "bench/llm", kind="model", message="local")
                    local_runs.append(time.perf_counter() - t)
                shutil.rmtree(work / f"local-{i}")
                subprocess.run(["sync"], check=True)
                remote_runs.append(timed_remote_push(work / f"remote-{i}", model.parent, small))
            local_s, remote_s = statistics.median(local_runs), statistics.median(remote_runs)
            results["remote_push_vs_local"] = remote_s / local_s
            print(
                f"  push of {size / 2**20:.0f} MiB, median of {args.push_runs}: local {local_s:.2f} s "
                f"({size / 2**20 / local_s:.0f} MiB/s), remote over loopback {remote_s:.2f} s "
                f"({size / 2**20 / remote_s:.0f} MiB/s), ratio {results['remote_push_vs_local']:.2f}"
            )
            print("    local runs  " + " ".join(f"{x:.2f}" for x in local_runs))
            print("    remote runs " + " ".join(f"{x:.2f}" for x in remote_runs)
                  + "   (ratios " + " ".join(f"{r / lo:.2f}" for r, lo in zip(remote_runs, local_runs)) + ")")
            r = transfer.upload(http, model.parent, "bench/llm", kind="model", message="base")  # the variant's base

            # a fine-tuned variant: what goes over the wire against its new chunks
            changed = pick_changed(specs, 0.10, seed=1)
            variant = work / "variant" / "model.safetensors"
            variant.parent.mkdir()
            write_model(variant, specs, seed=1, changed=changed)
            _, base_manifest = http_manifest(http, f"bench/llm@{r.version.version}")
            rv = transfer.upload(http, variant.parent, "bench/llm", kind="model", message="variant",
                                 variant_of=f"bench/llm@{r.version.version}")
            _, var_manifest = http_manifest(http, f"bench/llm@{rv.version.version}")
            known = base_manifest.chunk_digests()
            new_chunks = {c.digest: c.size for f in var_manifest for c in f.chunks if c.digest not in known}
            new_bytes = sum(new_chunks.values())
            results["variant_sent_vs_new_chunks"] = rv.wire_bytes / max(new_bytes, 1)
            print(
                f"  variant ({len(changed)} of {len(specs)} tensors changed): sent {rv.wire_bytes / 2**20:.1f} MiB "
                f"for {new_bytes / 2**20:.1f} MiB of new chunks (ratio {results['variant_sent_vs_new_chunks']:.3f}); "
                f"reused {rv.reused_bytes / 2**20:.0f} MiB"
            )
        finally:
            http.close()
    finally:
        stop(proc)
    return results


def http_manifest(http: Http, ref: str):  # type: ignore[no-untyped-def]
    from modelkeep.registry.types import Version
    from modelkeep.registry.wire import from_wire
    from modelkeep.store.manifest import Manifest

    doc = http.request("GET", "/api/v1/chunks/manifest", params={"ref": ref}).json()
    return from_wire(Version, doc["version"]), Manifest.from_doc(doc["manifest"])


def bench_mlflow(work: Path, args: argparse.Namespace) -> dict[str, float] | None:
    if importlib.util.find_spec("mlflow") is None:
        print("MLflow: not installed here (pip install mlflow to compare); skipped")
        return None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--default-artifact-root", str(work / "mlruns")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out: dict[str, float] = {}
    try:
        out["start_s"] = wait_up(f"{base}/health", proc, 120)
        # /health answers as soon as one worker is up, while the others are still
        # starting and keep both cores busy for several seconds more: measured then,
        # MLflow answered a third of what it does once settled.
        out["settled_s"] = out["start_s"] + settle(proc.pid, 120)
        api = f"{base}/api/2.0/mlflow"
        with httpx.Client(timeout=30) as c:
            c.post(f"{api}/registered-models/create", json={"name": "bench-model"}).raise_for_status()
            # MLflow 3 refuses a local path as a version source without a run; a remote
            # URI is only recorded (resolving the alias never touches it).
            source = "s3://bench-bucket/model"
            c.post(f"{api}/model-versions/create", json={"name": "bench-model", "source": source}).raise_for_status()
            c.post(f"{api}/registered-models/alias", json={"name": "bench-model", "alias": "production", "version": "1"}).raise_for_status()
        print("MLflow server:")
        print(f"  started in {out['start_s']:.2f} s (answers /health; its workers settled after {out['settled_s']:.1f} s)")
        a = alias_load("MLflow", f"{api}/registered-models/alias", {"name": "bench-model", "alias": "production"}, args.seconds)
        out.update({f"alias_{k}": v for k, v in a.items()})
        out["rss_mb"] = rss_mb(proc.pid)
        print(f"  RSS after the load: {out['rss_mb']:.0f} MB")
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=1024, help="size of the safetensors file pushed (default 1024)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each load run at 32 connections")
    p.add_argument("--auth", action="store_true", help="authenticate every request with a token (default: --no-auth)")
    p.add_argument("--push-runs", type=int, default=3, help="interleaved local and remote pushes compared (median)")
    p.add_argument("--workers", type=int, default=2, help="also measure alias resolution with mk server --workers N (1: skip)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mk-server-bench-", dir=args.work))
    try:
        mk = bench_modelkeep(work, args)
        ml = bench_mlflow(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nsummary (target in brackets):")
    rows = [
        ("resolve alias req/s at 32 conn", f"{mk['alias_rps_32']:.0f}", ""),
        ("resolve alias p99 at 32 conn (ms)", f"{mk['alias_p99_32_ms']:.1f}", f"[<= {TARGETS['alias_p99_32_ms']:.0f}]"),
        ("resolve alias p50 single client (ms)", f"{mk['alias_p50_single_ms']:.2f}", f"[<= {TARGETS['alias_p50_single_ms']:.0f}]"),
        ("server start, existing database (s)", f"{mk['start_s']:.2f}", f"[<= {TARGETS['start_s']:.0f}]"),
        ("server start, new database (s)", f"{mk['first_start_s']:.2f}", ""),
        ("server RSS (MB)", f"{mk['rss_mb']:.0f}", f"[<= {TARGETS['rss_mb']:.0f}]"),
        ("remote push / local push", f"{mk['remote_push_vs_local']:.2f}", f"[<= {TARGETS['remote_push_vs_local']:.0f}]"),
        ("variant: bytes sent / new chunk bytes", f"{mk['variant_sent_vs_new_chunks']:.3f}",
         f"[<= {TARGETS['variant_sent_vs_new_chunks']}]"),
    ]
    if args.workers > 1:
        rows[1:1] = [
            (f"  with --workers {args.workers}", f"{mk['workers_rps_32']:.0f}", ""),
            (f"  with --workers {args.workers}: p99 (ms)", f"{mk['workers_p99_32_ms']:.1f}", ""),
            (f"  with --workers {args.workers}: RSS / PSS (MB)", f"{mk['workers_rss_mb']:.0f} / {mk['workers_pss_mb']:.0f}", ""),
        ]
    if ml is not None:
        ratio = f"{mk['alias_rps_32'] / ml['alias_rps_32']:.1f}"
        if args.workers > 1:
            ratio += f" / {mk['workers_rps_32'] / ml['alias_rps_32']:.1f}"
        label = "  x MLflow's req/s" + (f" (1 / {args.workers} workers)" if args.workers > 1 else "")
        rows.insert(1, (label, ratio, f"[>= {TARGETS['alias_rps_vs_mlflow']:.0f}]"))
    for label, value, target in rows:
        print(f"  {label:40s} {value:>10s} {target}")
    print(f"  (pushes: median of {args.push_runs} interleaved runs; client and server share this machine's cores)")


if __name__ == "__main__":
    main()
