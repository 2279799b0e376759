"""Settings: built once at the edge (CLI, server, ``modelkeep.open``) and passed down.

Library code never reads the environment; only :meth:`Settings.from_env` does.

Environment variables:

``MODELKEEP_HOME``   home folder of the embedded registry (default ``~/.modelkeep``)
``MODELKEEP_URI``    database URL (default ``sqlite:///$MODELKEEP_HOME/registry.db``), or the
                     ``http://`` / ``https://`` URL of a modelkeep server
``MODELKEEP_STORE``  store URL (default ``file://$MODELKEEP_HOME/store``)
``MODELKEEP_USER``   actor name recorded on every change (default: the OS user)
``MODELKEEP_TOKEN``  API token sent to a modelkeep server (``Authorization: Bearer``)
``MODELKEEP_CACHE``  chunk cache of the remote client (default ``~/.cache/modelkeep``)
``MODELKEEP_CACHE_GB``  size bound of that cache in GiB (default 20; 0 turns it off)
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelkeep.errors import InvalidInput

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db_url: str
    store_url: str
    user: str
    token: str | None = field(default=None, repr=False)  # API token for a remote registry; never shown
    cache_dir: Path = Path("~/.cache/modelkeep")  # chunks pulled from a server, by digest
    cache_max_bytes: int = 20 * 1024**3  # least recently used chunks go past this

    @property
    def remote(self) -> bool:
        """True when ``db_url`` names a modelkeep server (http:// or https://)."""
        return self.db_url.startswith(("http://", "https://"))

    @classmethod
    def for_home(cls, home: str | Path, *, user: str | None = None) -> Settings:
        home = Path(home).expanduser().absolute()
        return cls(
            home=home,
            db_url=f"sqlite:///{home / 'registry.db'}",
            store_url=f"file://{home / 'store'}",
            user=user or _os_user(),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> Settings:
        """Settings from environment variables; explicit ``overrides`` win."""
        env = os.environ if env is None else env
        home = overrides.get("home") or env.get("MODELKEEP_HOME") or "~/.modelkeep"
        s = cls.for_home(home)
        db_url = overrides.get("db_url") or env.get("MODELKEEP_URI") or s.db_url
        store_url = overrides.get("store_url") or env.get("MODELKEEP_STORE") or s.store_url
        user = overrides.get("user") or env.get("MODELKEEP_USER") or s.user
        token = overrides.get("token") or env.get("MODELKEEP_TOKEN") or None
        cache_dir = Path(overrides.get("cache_dir") or env.get("MODELKEEP_CACHE") or s.cache_dir).expanduser()
        cache_gb = overrides.get("cache_gb") or env.get("MODELKEEP_CACHE_GB")
        try:
            cache_max = int(float(cache_gb) * 1024**3) if cache_gb else s.cache_max_bytes
        except ValueError:
            raise InvalidInput(f"MODELKEEP_CACHE_GB must be a number of GiB, got {cache_gb!r}") from None
        return replace(
            s, db_url=db_url, store_url=store_url, user=user, token=token, cache_dir=cache_dir, cache_max_bytes=cache_max
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
