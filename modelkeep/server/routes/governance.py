"""Routes of the governance group (stages, policies, approvals, rollback): rows of registry/operations.py."""

from modelkeep.server.routes._operation import operations_router

router = operations_router("governance")
