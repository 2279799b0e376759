"""The registry domain: one interface, :class:`Registry` (``registry/api.py``).

Implementations: ``modelkeep.registry.embedded.EmbeddedRegistry`` (database URL +
chunk store, in process), opened by ``modelkeep.open``. It is not imported here,
so that importing the interface does not load SQLAlchemy or the store.
"""

from modelkeep.registry.api import Progress, RefLike, RefsLike, Registry
from modelkeep.registry.names import RefKind, VersionRef
from modelkeep.registry.semver import SemVer

__all__ = ["Registry", "Progress", "RefLike", "RefsLike", "RefKind", "VersionRef", "SemVer"]
