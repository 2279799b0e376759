"""Routes of the signatures group: thin adapters over the Registry (rows of registry/operations.py)."""

from modelkeep.server.routes._operation import operations_router

router = operations_router("signatures")
