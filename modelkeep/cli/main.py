"""The ``modelkeep`` / ``mk`` command.

Global options build :class:`~modelkeep.config.Settings` once; every command goes
through the :class:`~modelkeep.registry.api.Registry` interface. Errors are mapped
to messages and exit codes here, once: ``error: <message>`` (and ``hint: …``) on
stderr, exit status from the error class (2 usage, 3 not found, 4 conflict,
5 integrity, 6 storage, 1 anything else), 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelkeep.cli import aliases, artifacts, lineage, server, store, tags, versions
from modelkeep.cli import retention, signing  # retention and signatures
from modelkeep.cli import audit, governance  # stages, policies, approvals, rollback, audit trail
from modelkeep.cli import compare, evaluate, impact  # ML: comparison, evaluation, impact analysis
from modelkeep.cli import bundles  # ML: bundles
from modelkeep.cli._context import State, state
from modelkeep.cli._output import err
from modelkeep.config import Settings
from modelkeep.errors import ModelkeepError

__all__ = ["app", "run"]


class _Group(TyperGroup):
    """Root group: the single place where expected errors become messages and exit codes."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ModelkeepError as e:
            report_error(e)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err().print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except OSError as e:
            # Disk full, permission denied, broken pipe in a file the user named: no traceback.
            err().print(f"error: {e}", markup=False)
            raise typer.Exit(1) from None


def report_error(e: ModelkeepError) -> None:
    con = err()
    con.print(f"error: {e.message}", markup=False, highlight=False)
    if e.hint:
        con.print(f"hint: {e.hint}", markup=False, highlight=False)


app = typer.Typer(
    cls=_Group,
    name="mk",
    help="modelkeep: immutable, content-addressed, deduplicated model versions with lineage and aliases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"modelkeep {version('modelkeep')}")
        except PackageNotFoundError:
            typer.echo("modelkeep (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        str | None, typer.Option("--home", help="Registry home folder (env MODELKEEP_HOME, default ~/.modelkeep).")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (env MODELKEEP_URI, default sqlite in the home).")] = None,
    store_url: Annotated[str | None, typer.Option("--store", help="Store URL (env MODELKEEP_STORE, default file://HOME/store).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Actor recorded on every change (env MODELKEEP_USER, default the OS user).")] = None,
    _version: Annotated[
        bool, typer.Option("--version", "-V", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options apply to every command."""
    settings = Settings.from_env(os.environ, home=home, db_url=db, store_url=store_url, user=user)
    st = State(settings)
    ctx.obj = st
    ctx.call_on_close(st.close)


def demo(
    ctx: typer.Context,
    dest: Annotated[
        Path | None,
        typer.Argument(help="Home folder for the demo registry (default: a new temporary folder)."),
    ] = None,
) -> None:
    """Run a short tour in a throwaway registry (never touches your own)."""
    from modelkeep import demo as _demo

    code = _demo.run_demo(dest)
    if code:
        raise typer.Exit(code)


_START = "Start"
_VERSIONS = "Versions"
_LABELS = "Aliases, tags, lineage"
_STORAGE = "Storage"

app.command("init", rich_help_panel=_START)(artifacts.init)
app.command("demo", rich_help_panel=_START)(demo)
app.command("push", rich_help_panel=_VERSIONS)(versions.push)
app.command("pull", rich_help_panel=_VERSIONS)(versions.pull)
app.command("ls", rich_help_panel=_VERSIONS)(artifacts.ls)
app.command("show", rich_help_panel=_VERSIONS)(versions.show)
app.command("log", rich_help_panel=_VERSIONS)(versions.log)
app.command("diff", rich_help_panel=_VERSIONS)(versions.diff)
app.add_typer(aliases.app, name="alias", rich_help_panel=_LABELS)
app.add_typer(tags.app, name="tag", rich_help_panel=_LABELS)
app.command("lineage", rich_help_panel=_LABELS)(lineage.lineage)
app.command("du", rich_help_panel=_STORAGE)(store.du)
app.command("fsck", rich_help_panel=_STORAGE)(store.fsck)
app.command("gc", rich_help_panel=_STORAGE)(store.gc)
app.command("digest", rich_help_panel=_STORAGE)(store.digest)
app.command("compare", rich_help_panel="ML")(compare.compare)
app.command("evaluate", rich_help_panel="ML")(evaluate.evaluate)
app.command("impact", rich_help_panel="ML")(impact.impact)
app.add_typer(bundles.app, name="bundle", rich_help_panel="ML")
app.add_typer(server.app, name="server", rich_help_panel="Server")
# governance
_GOVERN = "Governance: stages, approvals, audit"
app.command("stage", rich_help_panel=_GOVERN)(governance.stage)
app.command("stages", rich_help_panel=_GOVERN)(governance.stages)
app.command("promote", rich_help_panel=_GOVERN)(governance.promote)
app.command("rollback", rich_help_panel=_GOVERN)(governance.rollback)
app.add_typer(governance.policy_app, name="policy", rich_help_panel=_GOVERN)
app.add_typer(governance.approve_app, name="approve", rich_help_panel=_GOVERN)
app.command("reject", rich_help_panel=_GOVERN)(governance.reject)
app.command("history", rich_help_panel=_GOVERN)(audit.history)
app.add_typer(audit.app, name="audit", rich_help_panel=_GOVERN)
# retention and signatures
_TRUST = "Retention and signatures"
app.command("sign", rich_help_panel=_TRUST)(signing.sign)
app.command("verify", rich_help_panel=_TRUST)(signing.verify)
app.add_typer(signing.keys_app, name="keys", rich_help_panel=_TRUST)
app.add_typer(retention.app, name="retention", rich_help_panel=_TRUST)


def run() -> None:
    """Console-script entry point (``modelkeep`` and ``mk``)."""
    name = Path(sys.argv[0]).name
    app(prog_name="mk" if not name or name.endswith(".py") else name)
