"""A short tour of modelkeep: ``python -m modelkeep.demo [HOME]`` or ``mk demo [HOME]``.

Builds a small safetensors classifier with numpy, pushes it, pushes a fine-tune
derived from it, moves the ``production`` alias, then shows ``log``, ``diff``,
``lineage`` and ``du``. Every step runs the real ``mk`` command in process, so the
output is exactly what a user sees. The registry lives in HOME, or in a new
temporary folder; ``~/.modelkeep`` and ``MODELKEEP_*`` settings are never used.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import struct
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from modelkeep.config import Settings

__all__ = ["run_demo", "write_safetensors", "make_classifier", "main"]

NAME = "demo/classifier"
DATA = "demo/train-data"


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write the safetensors format by hand: u64 LE header length, JSON header, then the raw data."""
    header: dict[str, object] = {}
    arrays: list[np.ndarray] = []
    offset = 0
    for name, tensor in tensors.items():
        arr = np.ascontiguousarray(tensor, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for arr in arrays:
            f.write(arr.tobytes())


def make_classifier(seed: int = 0) -> dict[str, np.ndarray]:
    """21 float32 tensors, about 4.2 MB: an embedding, 8 dense blocks, a norm and a head."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {"embed.weight": rng.standard_normal((2000, 256), dtype=np.float32) * 0.02}
    for i in range(8):
        t[f"blocks.{i}.weight"] = rng.standard_normal((256, 256), dtype=np.float32) * 0.05
        t[f"blocks.{i}.bias"] = np.zeros(256, dtype=np.float32)
    t["norm.weight"] = np.ones(256, dtype=np.float32)
    t["norm.bias"] = np.zeros(256, dtype=np.float32)
    t["head.weight"] = rng.standard_normal((256, 10), dtype=np.float32) * 0.05
    t["head.bias"] = np.zeros(10, dtype=np.float32)
    return t


def fine_tune(tensors: Mapping[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    """Change the last block and the head, as a fine-tune of the top layers would."""
    rng = np.random.default_rng(seed)
    out = dict(tensors)
    for name in ("blocks.7.weight", "blocks.7.bias", "head.weight", "head.bias"):
        out[name] = tensors[name] + rng.standard_normal(tensors[name].shape, dtype=np.float32) * 0.01
    return out


def _write_model(folder: Path, tensors: Mapping[str, np.ndarray], config: Mapping[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", tensors, {"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def _write_dataset(folder: Path, rows: int = 2000, seed: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.standard_normal((rows, 4))
    y = rng.integers(0, 10, rows)
    lines = ["f0,f1,f2,f3,label"] + [",".join(f"{v:.5f}" for v in r) + f",{c}" for r, c in zip(x, y, strict=True)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder


def run_demo(home: Path | None = None) -> int:
    """Run the tour; return the exit status of the first failing step (0 when all pass)."""
    from rich.markup import escape

    from modelkeep.cli._output import out
    from modelkeep.cli.main import app
    from typer.main import get_command

    con = out()
    home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="modelkeep-demo-"))
    settings = Settings.for_home(home)
    # Pin database and store to the demo home so MODELKEEP_URI / MODELKEEP_STORE cannot redirect the demo.
    global_args = ["--home", str(settings.home), "--db", settings.db_url, "--store", settings.store_url]
    command = get_command(app)

    def mk(*args: str) -> int:
        con.print()
        con.print(f"[bold green]$[/] [bold]mk {escape(shlex.join(args))}[/]", soft_wrap=True)
        sys.stdout.flush()
        rc = command.main(args=[*global_args, *args], prog_name="mk", standalone_mode=False)
        return rc if isinstance(rc, int) else 0

    con.print(f"[bold]modelkeep demo[/]: registry in {escape(str(settings.home))} (your ~/.modelkeep is not used)")
    con.print(f"[bold green]$[/] export MODELKEEP_HOME={escape(shlex.quote(str(settings.home)))}")
    with tempfile.TemporaryDirectory(prefix="modelkeep-demo-files-") as tmp:
        work = Path(tmp)
        base = make_classifier()
        tuned = fine_tune(base)
        config = {"architecture": "mlp-classifier", "hidden": 256, "layers": 8, "classes": 10}
        data_dir = _write_dataset(work / "train-data").name
        base_dir = _write_model(work / "classifier-base", base, config).name
        tuned_dir = _write_model(work / "classifier-finetuned", tuned, config).name

        steps: list[Sequence[str]] = [
            ("init",),
            ("push", data_dir, DATA, "--kind", "dataset", "-m", "2,000 labelled rows"),
            (
                "push", base_dir, NAME, "--kind", "model", "-m", "baseline",
                "--param", "lr=0.001", "--param", "epochs=10", "--param", "optimizer=adamw",
                "--metric", "accuracy=0.912", "--metric", "f1=0.874",
                "--trained-on", f"{DATA}@1.0.0",
            ),
            (
                "push", tuned_dir, NAME, "-m", "fine-tune last block and head on March data",
                "--param", "lr=0.0001", "--param", "epochs=3", "--param", "optimizer=adamw",
                "--metric", "accuracy=0.927", "--metric", "f1=0.893",
                "--derived-from", f"{NAME}@1.0.0", "--trained-on", f"{DATA}@1.0.0",
            ),
            (
                "push", tuned_dir, NAME, "-m", "fine-tune last block and head on March data",
                "--param", "lr=0.0001", "--param", "epochs=3", "--param", "optimizer=adamw",
                "--metric", "accuracy=0.927", "--metric", "f1=0.893",
                "--derived-from", f"{NAME}@1.0.0", "--trained-on", f"{DATA}@1.0.0",
            ),
            ("alias", "set", NAME, "production", "1.1.0", "--reason", "f1 +0.019 on the holdout set"),
            ("log", NAME),
            ("diff", f"{NAME}@1.0.0", f"{NAME}@production"),
            ("lineage", f"{NAME}@production"),
            ("du",),
        ]  # fmt: skip
        con.print(f"[bold green]$[/] cd {escape(shlex.quote(str(work)))}   [dim]# model files written with numpy[/]")
        previous = os.getcwd()
        os.chdir(work)  # so the commands shown use short relative paths, as a user would type them
        try:
            for step in steps:
                rc = mk(*step)
                if rc:
                    con.print(f"[red]demo stopped: mk {escape(step[0])} exited with {rc}[/]")
                    return rc
        finally:
            os.chdir(previous)
    con.print()
    con.print(
        f"Done. Explore with [bold]MODELKEEP_HOME={escape(shlex.quote(str(settings.home)))} mk show {NAME}@production[/]"
        f"; delete {escape(str(settings.home))} when finished."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelkeep.demo", description=__doc__.splitlines()[0])
    parser.add_argument("home", nargs="?", type=Path, help="registry home for the demo (default: a new temp folder)")
    args = parser.parse_args(argv)
    return run_demo(args.home)


if __name__ == "__main__":
    sys.exit(main())
