"""Governance: hash-chained audit events and their head, version stages, promotion policies, approvals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

GENESIS = "blake3:" + "0" * 64  # the "previous digest" of the first event


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('artifact', sa.String(length=129), nullable=True),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('previous', sa.String(length=71), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events'))
    )
    op.create_index('ix_audit_events_artifact_seq', 'audit_events', ['artifact', 'seq'], unique=False)
    op.create_index('ix_audit_events_at', 'audit_events', ['at'], unique=False)

    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.bulk_insert(head, [{'id': 1, 'seq': 0, 'digest': GENESIS}])

    op.create_table('version_stages',
    sa.Column('version_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_version_stages_artifact_id_artifacts')),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_version_stages_version_id_versions')),
    sa.PrimaryKeyConstraint('version_id', name=op.f('pk_version_stages'))
    )
    op.create_index('ix_version_stages_artifact_id_stage', 'version_stages', ['artifact_id', 'stage'], unique=False)

    op.create_table('policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_policies_artifact_id_artifacts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies')),
    sa.UniqueConstraint('artifact_id', 'revision', name=op.f('uq_policies_artifact_id_revision'))
    )

    op.create_table('approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_approvals_artifact_id_artifacts')),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_approvals_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals'))
    )
    op.create_index('ix_approvals_version_id_id', 'approvals', ['version_id', 'id'], unique=False)
    op.create_index(op.f('ix_approvals_artifact_id'), 'approvals', ['artifact_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_approvals_artifact_id'), table_name='approvals')
    op.drop_index('ix_approvals_version_id_id', table_name='approvals')
    op.drop_table('approvals')
    op.drop_table('policies')
    op.drop_index('ix_version_stages_artifact_id_stage', table_name='version_stages')
    op.drop_table('version_stages')
    op.drop_table('audit_head')
    op.drop_index('ix_audit_events_at', table_name='audit_events')
    op.drop_index('ix_audit_events_artifact_seq', table_name='audit_events')
    op.drop_table('audit_events')
