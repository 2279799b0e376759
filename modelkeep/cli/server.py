"""``mk server``: run the HTTP server; manage users, roles and API tokens.

    mk server --host 127.0.0.1 --port 8080 [--db URL] [--store URL]
    mk server create-admin alice            # the first admin; prints a token once
    mk server user add bob
    mk server grant bob contributor --namespace team
    mk server token create bob --expires-days 90
    mk server token ls
    mk server token revoke 3

The user commands talk to the registry database directly (whoever can run them
can read the database anyway); there is no default user and no password.
FastAPI and uvicorn come from the ``server`` extra and are imported only here.
"""

from __future__ import annotations

import gc
import getpass
import logging
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from modelkeep.cli._context import state
from modelkeep.cli._output import emit_json, err, out, table, when
from modelkeep.config import Settings
from modelkeep.errors import InvalidURI, MissingExtra, StorageError

if TYPE_CHECKING:
    from modelkeep.server.auth import AuthStore

__all__ = ["app"]

app = typer.Typer(
    help="Run the modelkeep server; manage its users, roles and API tokens.",
    invoke_without_command=True,
)
token_app = typer.Typer(help="API tokens: create, revoke, list.", no_args_is_help=True)
user_app = typer.Typer(help="Users: add, list.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")

DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default: the global --db / MODELKEEP_URI).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _settings(ctx: typer.Context, db: str | None = None, store: str | None = None) -> Settings:
    s = state(ctx).settings
    s = replace(s, db_url=db or s.db_url, store_url=store or s.store_url)
    if s.remote:
        raise InvalidURI(f"the server needs a database URL (sqlite:///… or postgresql://…), not {s.db_url}")
    return s


def _auth(ctx: typer.Context, db: str | None) -> AuthStore:
    from modelkeep.server.auth import AuthStore

    return AuthStore(_settings(ctx, db or ctx.meta.get("modelkeep.server.db")).db_url)


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    db: DbOpt = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL (default: the global --store / MODELKEEP_STORE).")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable authentication: every caller is an admin (local, single user only).")
    ] = False,
    max_json_mb: Annotated[float, typer.Option("--max-json-mb", help="Largest JSON request body.")] = 1.0,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest chunk batch or manifest commit.")] = 512.0,
    webhook_allow_private: Annotated[
        bool, typer.Option("--webhook-allow-private", help="Let webhooks reach loopback and private addresses.")
    ] = False,
    webhook_attempts: Annotated[int, typer.Option("--webhook-attempts", help="Delivery attempts per event.")] = 5,
    webhook_backoff: Annotated[float, typer.Option("--webhook-backoff", help="First retry wait in seconds; doubles.")] = 1.0,
    auth_cache_seconds: Annotated[
        float, typer.Option("--auth-cache-seconds", help="Reuse a token's caller this long (bound on revocation; 0: off).")
    ] = 1.0,
    read_threads: Annotated[
        int, typer.Option("--read-threads", min=1, help="Worker threads for read operations and token lookups.")
    ] = 4,
    upload_buffers_idle: Annotated[
        float,
        typer.Option("--upload-buffers-idle", min=0.0, help="Seconds without an upload before reused upload buffers are let go."),
    ] = 60.0,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes sharing the port, one core each (fork; see docs/server.md).")
    ] = 1,
) -> None:
    """Serve the registry over HTTP (OpenAPI at /docs, /healthz, /readyz, /metrics)."""
    if ctx.invoked_subcommand is not None:
        ctx.meta["modelkeep.server.db"] = db  # `mk server --db URL token ls` works too
        return
    try:
        import uvicorn

        from modelkeep.server.app import create_app
        from modelkeep.server.protocol import http_protocol
    except ImportError as exc:
        raise MissingExtra.of("server", exc.name or "fastapi") from None

    import modelkeep
    from modelkeep.server.settings import MiB, ServerSettings

    settings = _settings(ctx, db, store)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server_settings = ServerSettings(
        db_url=settings.db_url,
        auth=not no_auth,
        auth_cache_seconds=auth_cache_seconds,
        read_threads=read_threads,
        max_json_bytes=int(max_json_mb * MiB),
        max_upload_bytes=int(max_upload_mb * MiB),
        webhook_allow_private=webhook_allow_private,
        webhook_attempts=webhook_attempts,
        webhook_backoff_seconds=webhook_backoff,
        upload_buffers_idle_seconds=upload_buffers_idle,
    )

    def serve_on(registry, sockets=None, **where) -> None:  # type: ignore[no-untyped-def]
        web = create_app(registry, server_settings)
        # What exists now (the framework, the ORM's metadata, the app) lives as long
        # as the process: frozen, the collector never walks it again. Full
        # collections over it cost ~15 % of the server's CPU on an upload.
        gc.collect()
        gc.freeze()
        config = uvicorn.Config(web, log_level=log_level.lower(), access_log=False, http=http_protocol(), **where)
        server = uvicorn.Server(config)
        server.run(sockets=sockets)
        if not server.started:  # uvicorn logged why (the address in use, say)
            raise StorageError(f"the server could not start on {host}:{port}")

    with modelkeep.open(settings) as registry:  # creates or migrates the database, once
        shown = f"modelkeep server on http://{escape(host)}:{port} (docs at /docs)"
        if workers == 1:
            err().print(shown, markup=False, highlight=False)
            serve_on(registry, host=host, port=port)
            return
    from modelkeep.server.workers import serve_forked

    def run_worker(sock) -> None:  # type: ignore[no-untyped-def]
        with modelkeep.open(settings) as worker_registry:
            serve_on(worker_registry, sockets=[sock])

    err().print(f"{shown}, {workers} workers", markup=False, highlight=False)
    try:
        code = serve_forked(host, port, workers, run_worker)
    except OSError as exc:  # the address is taken, or no fork here
        raise StorageError(f"cannot serve on {host}:{port} with {workers} workers: {exc}") from None
    raise typer.Exit(code)


@app.command("create-admin")
def create_admin(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name of the admin.")],
    db: DbOpt = None,
    expires_days: Annotated[int | None, typer.Option("--expires-days", help="Token lifetime (default: no expiry).")] = None,
) -> None:
    """Create user NAME with role admin on every namespace and print a token, once."""
    from modelkeep.registry.operations import Role

    auth = _auth(ctx, db)
    try:
        auth.create_user(name, by=_me())
        auth.grant(name, "*", Role.ADMIN, by=_me())
        token_id, secret = auth.create_token(name, label="created by create-admin", expires_at=_expiry(expires_days))
    finally:
        auth.close()
    err().print(f"admin {name} created; token {token_id} (shown once, store it now):", markup=False, highlight=False)
    typer.echo(secret)


@user_app.command("add")
def user_add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name.")], db: DbOpt = None) -> None:
    """Create a user (no roles until granted)."""
    auth = _auth(ctx, db)
    try:
        auth.create_user(name, by=_me())
    finally:
        auth.close()
    out().print(f"user {escape(name)} created; give it a role: mk server grant {escape(name)} viewer --namespace NS")


@user_app.command("ls")
def user_ls(ctx: typer.Context, db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Users and their roles."""
    auth = _auth(ctx, db)
    try:
        users, grants = auth.users(), auth.grants()
    finally:
        auth.close()
    if json_:
        emit_json({"users": users, "grants": grants})
        return
    t = table("user", "namespace", "role")
    for u in users:
        mine = [g for g in grants if g.user == u] or [None]
        for g in mine:
            t.add_row(escape(u), escape(g.namespace or "(none)") if g else "-", g.role if g else "-")
    out().print(t)


@app.command("grant")
def grant(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="viewer, contributor, approver, admin, or none to take the role away.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace, '*' for all, '' for names without one.")] = "*",
    db: DbOpt = None,
) -> None:
    """Give USER ROLE on a namespace (replacing the role it had there)."""
    from modelkeep.registry.operations import Role

    auth = _auth(ctx, db)
    try:
        auth.grant(user, namespace, None if role == "none" else Role.parse(role), by=_me())
    finally:
        auth.close()
    out().print(f"{escape(user)}: {escape(role)} on {escape(namespace or '(none)')}")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User the token acts as.")],
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "",
    expires_days: Annotated[int | None, typer.Option("--expires-days", help="Lifetime in days (default: no expiry).")] = None,
    db: DbOpt = None,
) -> None:
    """Create a token for USER and print it, once (only its hash is stored)."""
    auth = _auth(ctx, db)
    try:
        token_id, secret = auth.create_token(user, label=label, expires_at=_expiry(expires_days))
    finally:
        auth.close()
    err().print(f"token {token_id} for {user} (shown once, store it now):", markup=False, highlight=False)
    typer.echo(secret)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="Token id (mk server token ls).")], db: DbOpt = None) -> None:
    """Revoke a token at once; requests with it get 401."""
    auth = _auth(ctx, db)
    try:
        auth.revoke_token(token_id)
    finally:
        auth.close()
    out().print(f"token {token_id} revoked")


@token_app.command("ls")
def token_ls(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Tokens (ids, users, expiry, revocation; never the secrets)."""
    auth = _auth(ctx, db)
    try:
        tokens = auth.tokens(user)
    finally:
        auth.close()
    if json_:
        emit_json(tokens)
        return
    t = table("id", "user", "label", "created", "expires", "revoked")
    for tk in tokens:
        t.add_row(
            str(tk.id), escape(tk.user), escape(tk.label), when(tk.created_at), when(tk.expires_at), when(tk.revoked_at)
        )
    out().print(t)


def _expiry(days: int | None):  # type: ignore[no-untyped-def]
    if days is None:
        return None
    from modelkeep.db.models import utcnow

    return utcnow() + timedelta(days=days)
