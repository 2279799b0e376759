"""ServerSettings: what one server process needs, built once at the edge (``mk server``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerSettings", "MiB"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    db_url: str  # the registry database; also holds users, tokens, roles and webhooks
    auth: bool = True  # False only with ``--no-auth`` (single-user, local)
    anonymous_user: str = "anonymous"  # actor recorded when auth is off
    auth_cache_seconds: float = 1.0  # a token's caller is reused this long: the bound on revocation (0: off)
    read_threads: int = 4  # worker threads for GET operations and token lookups (see ServerContext.read)
    max_json_bytes: int = 1 * MiB  # request bodies of JSON routes (413 above)
    max_upload_bytes: int = 512 * MiB  # one chunk batch or manifest commit (413 above)
    webhook_allow_private: bool = False  # deliver to loopback / private / link-local addresses
    webhook_queue_size: int = 1000  # events waiting for delivery; more are logged and dropped
    webhook_attempts: int = 5  # deliveries per event and subscription, with backoff between
    webhook_backoff_seconds: float = 1.0  # first wait; doubles each retry
    webhook_timeout_seconds: float = 10.0
    upload_buffers_idle_seconds: float = 60.0  # reused upload buffers are let go after this long without an upload
