"""Model signatures: a nullable JSON column on versions (ml/signature.py).

Revision ID: 0005_ml_signature
Revises: 0004_server_auth
Create Date: 2026-11-23

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005_ml_signature"
down_revision: Union[str, Sequence[str], None] = "0004_server_auth"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable: versions made before signatures existed, and non-model versions, have none.
    op.add_column("versions", sa.Column("signature", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("signature")
