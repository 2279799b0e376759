"""Initial schema: artifacts, manifests, versions, lineage edges, aliases and tags with history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=129), nullable=False),
    sa.Column('namespace', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifacts')),
    sa.UniqueConstraint('name', name=op.f('uq_artifacts_name'))
    )
    op.create_index(op.f('ix_artifacts_namespace'), 'artifacts', ['namespace'], unique=False)

    op.create_table('manifests',
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_manifests'))
    )
    op.create_table('versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('major', sa.Integer(), nullable=False),
    sa.Column('minor', sa.Integer(), nullable=False),
    sa.Column('patch', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('files_digest', sa.String(length=71), nullable=False),
    sa.Column('author', sa.String(length=255), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.Column('new_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_versions_artifact_id_artifacts')),
    sa.ForeignKeyConstraint(['files_digest'], ['manifests.digest'], name=op.f('fk_versions_files_digest_manifests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_versions')),
    sa.UniqueConstraint('artifact_id', 'major', 'minor', 'patch', name=op.f('uq_versions_artifact_id_major_minor_patch')),
    sa.UniqueConstraint('digest', name=op.f('uq_versions_digest'))
    )
    op.create_index('ix_versions_artifact_id_digest', 'versions', ['artifact_id', 'digest'], unique=False)
    op.create_index(op.f('ix_versions_files_digest'), 'versions', ['files_digest'], unique=False)

    op.create_table('alias_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('previous_version_id', sa.Integer(), nullable=True),
    sa.Column('new_version_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_alias_moves_artifact_id_artifacts')),
    sa.ForeignKeyConstraint(['new_version_id'], ['versions.id'], name=op.f('fk_alias_moves_new_version_id_versions')),
    sa.ForeignKeyConstraint(['previous_version_id'], ['versions.id'], name=op.f('fk_alias_moves_previous_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alias_moves'))
    )
    op.create_index('ix_alias_moves_artifact_id_alias_at', 'alias_moves', ['artifact_id', 'alias', 'at'], unique=False)

    op.create_table('aliases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_aliases_artifact_id_artifacts')),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_aliases_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aliases')),
    sa.UniqueConstraint('artifact_id', 'name', name=op.f('uq_aliases_artifact_id_name'))
    )
    op.create_index(op.f('ix_aliases_version_id'), 'aliases', ['version_id'], unique=False)

    op.create_table('edges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['versions.id'], name=op.f('fk_edges_source_id_versions')),
    sa.ForeignKeyConstraint(['target_id'], ['versions.id'], name=op.f('fk_edges_target_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_edges')),
    sa.UniqueConstraint('source_id', 'type', 'target_id', name=op.f('uq_edges_source_id_type_target_id'))
    )
    op.create_index(op.f('ix_edges_target_id'), 'edges', ['target_id'], unique=False)

    op.create_table('tag_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('previous', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_tag_changes_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tag_changes'))
    )
    op.create_index('ix_tag_changes_version_id_key_at', 'tag_changes', ['version_id', 'key', 'at'], unique=False)

    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_tags_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('version_id', 'key', name=op.f('uq_tags_version_id_key'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('tags')
    op.drop_index('ix_tag_changes_version_id_key_at', table_name='tag_changes')

    op.drop_table('tag_changes')
    op.drop_index(op.f('ix_edges_target_id'), table_name='edges')

    op.drop_table('edges')
    op.drop_index(op.f('ix_aliases_version_id'), table_name='aliases')

    op.drop_table('aliases')
    op.drop_index('ix_alias_moves_artifact_id_alias_at', table_name='alias_moves')

    op.drop_table('alias_moves')
    op.drop_index(op.f('ix_versions_files_digest'), table_name='versions')
    op.drop_index('ix_versions_artifact_id_digest', table_name='versions')

    op.drop_table('versions')
    op.drop_table('manifests')
    op.drop_index(op.f('ix_artifacts_namespace'), table_name='artifacts')

    op.drop_table('artifacts')
