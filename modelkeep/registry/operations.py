"""Registry methods as HTTP operations: the one table server routes and remote calls come from.

Each :class:`Operation` names a method of the ``Registry`` ABC, the HTTP verb and
path that expose it, the role a caller needs, which arguments name the artifacts
whose namespace that role is checked on, and the webhook event a success emits.
The server builds one route per row (``server/routes/_operation.py``) and the
remote client one method per row (``client/remote.py``), with arguments and
results encoded by ``registry/wire.py`` from the ABC's annotations. Exposing a
new Registry method is one row here.

Arguments travel in the query string for GET and DELETE (scalars as text, other
values as JSON) and as one JSON object for POST and PUT. ``push`` and ``pull``
(and ``commit_manifest``, ``manifest``) move bytes: chunk-level transfer has
routes of its own (``server/routes/chunks.py``); their roles and event are here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modelkeep.errors import InvalidInput

__all__ = ["Role", "Scope", "Operation", "OPERATIONS", "BY_METHOD", "TRANSFER_METHODS", "EVENTS"]


class Role(enum.IntEnum):
    """Roles per namespace; each includes the ones below it."""

    VIEWER = 1
    CONTRIBUTOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise InvalidInput(f"unknown role {text!r} (viewer, contributor, approver, admin)") from None


class Scope(enum.StrEnum):
    """What the arguments named in ``Operation.args`` hold."""

    NAME = "name"  # an artifact name; None: every artifact (the role is needed on "*")
    REF = "ref"  # a version ref ("team/fraud@production"); None as for NAME
    NAMESPACE = "namespace"  # a namespace, None meaning "every namespace the caller may see"
    GLOBAL = "global"  # registry-wide: the role is needed on every namespace ("*")


# Webhook events (``Operation.event``).
EVENTS = ("version.created", "alias.moved", "stage.changed", "approval.requested")


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # Registry method name
    verb: str  # GET, POST, PUT, DELETE
    path: str  # under /api/v1
    group: str  # route module / OpenAPI tag
    role: Role
    scope: Scope = Scope.NAME
    args: tuple[str, ...] = ("name",)  # arguments holding names / refs / the namespace
    event: str | None = None
    filter_results: bool = False  # drop records of namespaces the caller may not view
    # (argument, role): a call that sets this argument to true needs that role instead
    # (a forced transition overrides the policy: an admin's decision, not an approver's)
    elevated: tuple[tuple[str, Role], ...] = ()

    def role_for(self, args: dict) -> Role:  # type: ignore[type-arg]
        """The role a call with these arguments needs."""
        return max([self.role, *(role for arg, role in self.elevated if args.get(arg))])


_V, _C, _A, _ADM = Role.VIEWER, Role.CONTRIBUTOR, Role.APPROVER, Role.ADMIN

OPERATIONS: tuple[Operation, ...] = (
    # artifacts and versions
    Operation("artifacts", "GET", "/artifacts", "artifacts", _V, Scope.NAMESPACE, ("namespace",), filter_results=True),
    Operation("artifact", "GET", "/artifact", "artifacts", _V),
    Operation("versions", "GET", "/versions", "versions", _V),
    Operation("get", "GET", "/version", "versions", _V, Scope.REF, ("ref",)),
    Operation("files", "GET", "/files", "versions", _V, Scope.REF, ("ref",)),
    Operation("diff", "GET", "/diff", "versions", _V, Scope.REF, ("a", "b")),
    # aliases
    Operation("set_alias", "PUT", "/aliases", "aliases", _C, event="alias.moved"),
    Operation("remove_alias", "DELETE", "/aliases", "aliases", _C, event="alias.moved"),
    Operation("aliases", "GET", "/aliases", "aliases", _V),
    Operation("alias_history", "GET", "/aliases/history", "aliases", _V),
    Operation("alias_at", "GET", "/aliases/at", "aliases", _V),
    # tags
    Operation("set_tag", "PUT", "/tags", "tags", _C, Scope.REF, ("ref",)),
    Operation("tag_history", "GET", "/tags/history", "tags", _V, Scope.REF, ("ref",)),
    # lineage
    Operation("lineage", "GET", "/lineage", "lineage", _V, Scope.REF, ("ref",)),
    # audit trail
    Operation("history", "GET", "/audit/history", "audit", _V),
    Operation("audit_log", "GET", "/audit/log", "audit", _V, Scope.NAME, ("artifact",)),
    Operation("audit_verify", "GET", "/audit/verify", "audit", _V, Scope.GLOBAL, ()),
    Operation("record_run", "POST", "/audit/runs", "audit", _C),
    # governance: stages, policies, approvals, rollback
    Operation(
        "transition", "POST", "/stages", "governance", _A, Scope.REF, ("ref",), event="stage.changed",
        elevated=(("force", _ADM),),
    ),
    Operation("rollback", "POST", "/rollback", "governance", _A, event="stage.changed"),
    Operation("stages", "GET", "/stages", "governance", _V),
    Operation("set_policy", "PUT", "/policies", "governance", _ADM),
    Operation("policy", "GET", "/policies", "governance", _V),
    Operation("policy_history", "GET", "/policies/history", "governance", _V),
    Operation("check_policy", "GET", "/policies/check", "governance", _V, Scope.REF, ("ref",)),
    Operation(
        "request_approval", "POST", "/approvals/requests", "governance", _C, Scope.REF, ("ref",), event="approval.requested"
    ),
    Operation("approve", "POST", "/approvals/approve", "governance", _A, Scope.REF, ("ref",)),
    Operation("reject", "POST", "/approvals/reject", "governance", _A, Scope.REF, ("ref",)),
    Operation("approvals", "GET", "/approvals", "governance", _V, Scope.REF, ("ref",)),
    Operation("pending_approvals", "GET", "/approvals/pending", "governance", _V),
    # signatures
    # sign() is concrete in the ABC: it signs in the caller's process and sends only the signature.
    Operation("add_signature", "POST", "/signatures", "signatures", _A, Scope.REF, ("ref",)),
    Operation("signatures", "GET", "/signatures", "signatures", _V, Scope.REF, ("ref",)),
    Operation("verify", "POST", "/signatures/verify", "signatures", _V, Scope.REF, ("ref",)),
    # retention
    Operation("set_retention", "PUT", "/retention", "retention", _ADM),
    Operation("retention", "GET", "/retention", "retention", _V),
    Operation("retention_history", "GET", "/retention/history", "retention", _V),
    Operation("hold", "POST", "/holds", "retention", _A, Scope.REF, ("ref",)),
    Operation("release", "DELETE", "/holds", "retention", _A, Scope.REF, ("ref",)),
    Operation("holds", "GET", "/holds", "retention", _V),
    Operation("plan_retention", "GET", "/retention/plan", "retention", _V),
    Operation("apply_retention", "POST", "/retention/apply", "retention", _ADM),
    Operation("tombstones", "GET", "/tombstones", "retention", _V),
    # storage: registry-wide
    Operation("du", "GET", "/storage/du", "storage", _V, Scope.GLOBAL, ()),
    Operation("fsck", "POST", "/storage/fsck", "storage", _ADM, Scope.GLOBAL, ()),
    Operation("gc", "POST", "/storage/gc", "storage", _ADM, Scope.GLOBAL, ()),
)

BY_METHOD: dict[str, Operation] = {op.method: op for op in OPERATIONS}

# Methods with routes of their own (they move bytes), and what they need.
TRANSFER_METHODS: dict[str, Operation] = {
    "push": Operation("push", "POST", "/chunks/commit", "transfer", _C, event="version.created"),
    "pull": Operation("pull", "GET", "/chunks/manifest", "transfer", _V, Scope.REF, ("ref",)),
}
