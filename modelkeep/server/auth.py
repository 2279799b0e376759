"""Users, API tokens and roles per namespace.

There are no passwords. A token is ``mk_`` + 43 URL-safe characters (32 random
bytes); the database keeps only its SHA-256 (enough for a secret of that
entropy: nothing to brute-force), so a stolen database yields no usable token.
A token is shown once, when made, and works until it expires or is revoked.

A user holds at most one role per namespace: ``viewer`` < ``contributor`` <
``approver`` < ``admin``, each including the ones before. Namespace ``*``
covers every namespace; artifacts without a namespace (``fraud``) belong to
namespace ``""``. Registry-wide operations (gc, fsck, webhooks, du) need the
role on ``*``. Everything is denied unless a grant allows it.

A server process keeps the callers of tokens it saw in the last second or so
(:class:`TokenCache`), so most requests do not ask the database who they are.
That is the bound on revocation: a token revoked, or a grant changed, anywhere
takes effect in every process within ``auth_cache_seconds`` (1 s by default);
a token's expiry is exact (an entry never outlives its token).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db import schema
from modelkeep.db.engine import make_engine, make_sessionmaker
from modelkeep.db.models import ApiTokenRow, RoleGrantRow, UserRow, utcnow
from modelkeep.db.uow import UnitOfWork
from modelkeep.errors import ConflictError, Forbidden, InvalidName, NotFoundError, Unauthorized
from modelkeep.registry.names import check_name
from modelkeep.registry.operations import Role

__all__ = [
    "ALL", "check_namespace", "AuthStore", "Principal", "TokenCache", "TokenInfo", "Grant", "hash_token", "namespace_for"
]

ALL = "*"
TOKEN_PREFIX = "mk_"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def namespace_for(artifact: str) -> str:
    """The namespace roles are checked on for a (valid) artifact name."""
    head, sep, _ = artifact.partition("/")
    return head if sep else ""


def check_namespace(ns: str) -> str:
    if ns in (ALL, ""):
        return ns
    check_name(ns)
    if "/" in ns:
        raise InvalidName(f"invalid namespace {ns!r}: a namespace has no '/'")
    return ns


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user: str
    grants: dict[str, Role] = field(default_factory=dict)  # namespace -> role

    def role_on(self, namespace: str) -> Role | None:
        own, every = self.grants.get(namespace), self.grants.get(ALL)
        if own is None or (every is not None and every > own):
            return every
        return own

    def allows(self, role: Role, namespace: str) -> bool:
        if namespace == ALL:
            held = self.grants.get(ALL)
        else:
            held = self.role_on(namespace)
        return held is not None and held >= role

    def require(self, role: Role, namespace: str) -> None:
        """Raise Forbidden unless the caller holds ``role`` on ``namespace``; says nothing of the target."""
        if not self.allows(role, namespace):
            where = "every namespace" if namespace == ALL else f"namespace {namespace or '(none)'!r}"
            raise Forbidden(f"{self.user!r} needs role {role.label} on {where} for this operation")

    def visible(self, namespace: str) -> bool:
        return self.allows(Role.VIEWER, namespace)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Grant:
    user: str
    namespace: str
    role: str


class AuthStore:
    """Users, tokens and grants in the registry database (tables of ``0004_server_auth``)."""

    def __init__(self, db_url: str, *, upgrade: bool = True) -> None:
        self._engine = make_engine(db_url)
        try:
            if upgrade:
                schema.upgrade(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._uow = UnitOfWork(make_sessionmaker(self._engine))

    @property
    def uow(self) -> UnitOfWork:
        """Transactions on the same database (the webhook tables use it too)."""
        return self._uow

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Raise StorageError when the database does not answer."""
        from sqlalchemy import text

        self._uow.read(lambda db: db.execute(text("SELECT 1")).scalar_one())

    # -- users and grants -------------------------------------------------------------

    def create_user(self, name: str, *, by: str) -> None:
        _check_user(name)

        def run(db: Session) -> None:
            if db.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise ConflictError(f"user {name!r} exists")
            db.add(UserRow(name=name, created_at=utcnow(), created_by=by))

        self._uow.write(run)

    def users(self) -> list[str]:
        return self._uow.read(lambda db: list(db.scalars(select(UserRow.name).order_by(UserRow.name))))

    def grant(self, user: str, namespace: str, role: Role | None, *, by: str) -> None:
        """Give ``user`` ``role`` on ``namespace`` (replacing any), or with None take it away."""
        check_namespace(namespace)

        def run(db: Session) -> None:
            uid = _user_id(db, user)
            row = db.scalar(select(RoleGrantRow).where(RoleGrantRow.user_id == uid, RoleGrantRow.namespace == namespace))
            if role is None:
                if row is not None:
                    db.delete(row)
            elif row is None:
                db.add(RoleGrantRow(user_id=uid, namespace=namespace, role=role.label, granted_at=utcnow(), granted_by=by))
            else:
                row.role, row.granted_at, row.granted_by = role.label, utcnow(), by

        self._uow.write(run)

    def grants(self, user: str | None = None) -> list[Grant]:
        def run(db: Session) -> list[Grant]:
            q = select(UserRow.name, RoleGrantRow.namespace, RoleGrantRow.role).join(
                RoleGrantRow, RoleGrantRow.user_id == UserRow.id
            )
            if user is not None:
                q = q.where(UserRow.name == user)
            return [Grant(u, n, r) for u, n, r in db.execute(q.order_by(UserRow.name, RoleGrantRow.namespace))]

        return self._uow.read(run)

    # -- tokens -----------------------------------------------------------------------

    def create_token(self, user: str, *, label: str = "", expires_at: datetime | None = None) -> tuple[int, str]:
        """A new token of ``user``: (id, secret). The secret is not stored and cannot be shown again."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)

        def run(db: Session) -> int:
            row = ApiTokenRow(
                user_id=_user_id(db, user),
                token_hash=hash_token(secret),
                label=label,
                created_at=utcnow(),
                expires_at=expires_at,
                revoked_at=None,
            )
            db.add(row)
            db.flush()
            return row.id

        return self._uow.write(run), secret

    def revoke_token(self, token_id: int) -> None:
        def run(db: Session) -> None:
            row = db.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()

        self._uow.write(run)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        def run(db: Session) -> list[TokenInfo]:
            q = select(ApiTokenRow, UserRow.name).join(UserRow, UserRow.id == ApiTokenRow.user_id)
            if user is not None:
                q = q.where(UserRow.name == user)
            return [
                TokenInfo(t.id, name, t.label, t.created_at, t.expires_at, t.revoked_at)
                for t, name in db.execute(q.order_by(ApiTokenRow.id))
            ]

        return self._uow.read(run)

    def authenticate(self, secret: str | None) -> Principal:
        """The caller a bearer token names. Raises Unauthorized for a missing, unknown, expired or revoked one."""
        return self.lookup(secret)[0]

    def lookup(self, secret: str | None) -> tuple[Principal, datetime | None]:
        """As :meth:`authenticate`, with the token's expiry (naive UTC, None: none)."""
        if not secret:
            raise Unauthorized("authentication required", hint="send 'Authorization: Bearer <token>' (MODELKEEP_TOKEN)")
        digest = hash_token(secret)

        def run(db: Session) -> tuple[Principal, datetime | None]:
            # One round trip: the token, its user and every grant (outer join: a user may hold none).
            rows = db.execute(
                select(ApiTokenRow.revoked_at, ApiTokenRow.expires_at, UserRow.name, RoleGrantRow.namespace, RoleGrantRow.role)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .outerjoin(RoleGrantRow, RoleGrantRow.user_id == ApiTokenRow.user_id)
                .where(ApiTokenRow.token_hash == digest)
            ).all()
            if not rows:
                raise Unauthorized("unknown token")
            revoked_at, expires_at, name = rows[0][0], rows[0][1], rows[0][2]
            if revoked_at is not None:
                raise Unauthorized("token revoked")
            if expires_at is not None and expires_at <= utcnow():
                raise Unauthorized("token expired", hint="ask an admin for a new token (mk server token create)")
            return Principal(name, {ns: Role.parse(role) for *_, ns, role in rows if ns is not None}), expires_at

        return self._uow.read(run)


class TokenCache:
    """Callers of the tokens this process authenticated in the last ``ttl`` seconds.

    :meth:`get` answers from memory (no database, no thread), :meth:`authenticate`
    asks the database and remembers a success. Bounds: a revocation, a grant
    change or a new expiry made anywhere reaches this process within ``ttl``
    seconds; an entry never outlives its token's ``expires_at``. Failures are
    never remembered (a token made a moment ago works at once, and unknown
    tokens cannot fill the cache); at most ``size`` tokens are kept, the oldest
    dropped first. Keys are the SHA-256 of the secrets, like the database's.
    ``ttl=0`` turns the cache off: every request asks the database.
    """

    def __init__(
        self, auth: AuthStore, *, ttl: float, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._auth = auth
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}  # token hash -> (deadline on clock, caller)
        self._lock = threading.Lock()  # writers; get() reads one key, atomic under the GIL

    def get(self, secret: str) -> Principal | None:
        """The caller of ``secret`` if it was authenticated less than ``ttl`` seconds ago, else None."""
        if self._ttl <= 0 or not secret:
            return None
        key = hash_token(secret)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            return None
        return entry[1]

    def authenticate(self, secret: str | None) -> Principal:
        """Ask the database (:meth:`AuthStore.authenticate`) and remember a success."""
        now = self._clock()
        principal, expires_at = self._auth.lookup(secret)
        if self._ttl <= 0 or not secret:
            return principal
        deadline = now + self._ttl
        if expires_at is not None:
            deadline = min(deadline, now + (expires_at - utcnow()).total_seconds())
        with self._lock:
            self._entries.pop(hash_token(secret), None)
            self._entries[hash_token(secret)] = (deadline, principal)
            while len(self._entries) > self._size:
                del self._entries[next(iter(self._entries))]
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _check_user(name: str) -> None:
    try:
        check_name(name)
    except InvalidName:
        raise InvalidName(f"invalid user name {name!r} (lowercase letters, digits, '.', '_', '-')") from None
    if "/" in name:
        raise InvalidName(f"invalid user name {name!r}: no '/'")


def _user_id(db: Session, user: str) -> int:
    uid = db.scalar(select(UserRow.id).where(UserRow.name == user))
    if uid is None:
        raise NotFoundError(f"no user {user!r}", hint="create it with: mk server user add NAME")
    return uid
