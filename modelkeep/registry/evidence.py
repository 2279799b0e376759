"""Evidence a promotion policy reads beyond the two versions: evaluations and impact flags.

Evaluation versions (``kind: evaluation``, made by ``mk evaluate``) carry an
``evaluated_on`` edge to the model they judge and one to the dataset version
they ran on; their params name that dataset (``params.dataset``, a ref) and
their metrics hold the per-slice gaps (``slice_gap.<metric>``). Impact analysis
(``mk impact --flag``) marks affected versions with tags named ``impact-…``.
Everything here is read from the registry's own rows, inside the promotion's
transaction, so registry/ needs nothing from ml/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, EdgeRow, VersionRow
from modelkeep.registry.types import EdgeType, Kind

__all__ = ["Evaluation", "evaluations_of", "IMPACT_TAG_PREFIX"]

IMPACT_TAG_PREFIX = "impact-"


@dataclass(frozen=True, slots=True)
class Evaluation:
    ref: str  # "fraud-eval@1.0.0"
    dataset: str | None  # the dataset version it ran on, as a ref
    metrics: Mapping[str, Any]


def evaluations_of(session: Session, version_id: int) -> list[Evaluation]:
    """Live evaluation versions linked ``evaluated_on`` the version, newest first."""
    stmt = (
        select(ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch, VersionRow.params, VersionRow.metrics)
        .join(EdgeRow, and_(EdgeRow.source_id == VersionRow.id, EdgeRow.type == EdgeType.EVALUATED_ON.value))
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(EdgeRow.target_id == version_id, VersionRow.kind == Kind.EVALUATION.value, VersionRow.deleted_at.is_(None))
        .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
    )
    out = []
    for name, a, b, c, params, metrics in session.execute(stmt):
        dataset = params.get("dataset") if isinstance(params, Mapping) else None
        out.append(Evaluation(f"{name}@{a}.{b}.{c}", str(dataset) if dataset else None, metrics or {}))
    return out
