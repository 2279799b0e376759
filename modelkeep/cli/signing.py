"""``mk sign``, ``mk verify`` and ``mk keys``: Ed25519 signatures over versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out, table, when
from modelkeep.errors import InvalidPath
from modelkeep.registry.signatures import fingerprint, write_keypair

__all__ = ["keys_app", "sign", "verify"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]

keys_app = typer.Typer(help="Ed25519 keys for signing versions.", no_args_is_help=True)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise InvalidPath(f"cannot read the {what} {path}: {exc.strerror}") from None


def sign(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version to sign, e.g. team/fraud@1.4.0.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private key file (PEM), from mk keys generate.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; recorded with the signature.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Sign REF with an Ed25519 private key; the signature is stored beside the version."""
    rec = registry(ctx).sign(ref, _read(key, "private key"), reason=reason)
    if json_:
        emit_json(rec)
        return
    out().print(f"signed {escape(str(rec.version))} with key {escape(rec.key_fingerprint)}")


def verify(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version whose signatures to check.")],
    keys: Annotated[
        list[Path] | None,
        typer.Option("--key", "-k", help="Trusted public key (PEM); repeat for several. Default: every signature."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Check the signatures of REF (or those of the given keys). Exit 5 unless every check is valid."""
    pems = [_read(p, "public key") for p in keys] if keys else None
    checks = registry(ctx).verify(ref, pems)
    ok = bool(checks) and all(c.valid for c in checks)
    if json_:
        emit_json({"ref": ref, "ok": ok, "checks": checks})
    elif not checks:
        out().print(f"{escape(ref)} has no signatures: mk sign {escape(ref)} --key KEYFILE")
    else:
        t = table("key", "valid", "signer", "signed", "detail", wrap=("detail",))
        for c in checks:
            s = c.signature
            t.add_row(
                escape(c.key_fingerprint),
                "[green]yes[/]" if c.valid else "[red]NO[/]",
                escape(s.signer) if s else "-",
                when(s.signed_at) if s else "-",
                escape(c.detail),
            )
        out().print(t)
    if not ok:
        raise typer.Exit(5)


@keys_app.command("generate")
def generate(
    path: Annotated[Path, typer.Argument(help="Private key file to create (mode 0600); the public key goes to PATH.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Create an Ed25519 keypair: PATH (private, 0600) and PATH.pub (public)."""
    private, public = write_keypair(path, overwrite=force)
    fp = fingerprint(public.read_bytes())
    if json_:
        emit_json({"private_key": private, "public_key": public, "fingerprint": fp})
        return
    out().print(f"private key: {escape(str(private))} (keep it secret)")
    out().print(f"public key:  {escape(str(public))}")
    out().print(f"fingerprint: {escape(fp)}")


@keys_app.command("fingerprint")
def fingerprint_(
    path: Annotated[Path, typer.Argument(help="Public key file (PEM).")],
    json_: JsonOpt = False,
) -> None:
    """Print the fingerprint of a public key, as signatures list it."""
    fp = fingerprint(_read(path, "public key"))
    if json_:
        emit_json({"public_key": path, "fingerprint": fp})
        return
    out().print(fp)
