"""ingestion: versions, interactions, runs, quarantine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:53:46.358498
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('ingest_run',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rows_committed', sa.Integer(), nullable=False),
    sa.Column('inserted', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_ingest_run_source_id_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_run'))
    )
    with op.batch_alter_table('ingest_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingest_run_content_sha256'), ['content_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_ingest_run_source_id'), ['source_id'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('natural_key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.LargeBinary(length=16), nullable=False),
    sa.Column('enc_details', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['source_record.id'], name=op.f('fk_interaction_record_id_source_record'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_interaction_source_id_source')),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_interaction_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction')),
    sa.UniqueConstraint('source_id', 'natural_key', name=op.f('uq_interaction_source_id_natural_key'))
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interaction_record_id'), ['record_id'], unique=False)
        batch_op.create_index('ix_interaction_subject_id_occurred_at', ['subject_id', 'occurred_at'], unique=False)

    op.create_table('quarantined_row',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('fingerprint', sa.LargeBinary(length=16), nullable=False),
    sa.Column('enc_payload', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['ingest_run.id'], name=op.f('fk_quarantined_row_run_id_ingest_run')),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_quarantined_row_source_id_source')),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_quarantined_row_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_row'))
    )
    with op.batch_alter_table('quarantined_row', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_row_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantined_row_reason'), ['reason'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantined_row_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantined_row_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantined_row_status'), ['status'], unique=False)

    op.create_table('source_record_version',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replaced_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enc_snapshot', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['source_record.id'], name=op.f('fk_source_record_version_record_id_source_record'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_record_version')),
    sa.UniqueConstraint('record_id', 'version', name=op.f('uq_source_record_version_record_id_version'))
    )
    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mapping_toml', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('fingerprint', sa.LargeBinary(length=16), nullable=True))
        batch_op.add_column(sa.Column('enc_normalized', sa.LargeBinary(), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.drop_column('enc_normalized')
        batch_op.drop_column('fingerprint')
        batch_op.drop_column('last_activity_at')

    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
        batch_op.drop_column('mapping_toml')

    op.drop_table('source_record_version')
    with op.batch_alter_table('quarantined_row', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_row_status'))
        batch_op.drop_index(batch_op.f('ix_quarantined_row_source_id'))
        batch_op.drop_index(batch_op.f('ix_quarantined_row_run_id'))
        batch_op.drop_index(batch_op.f('ix_quarantined_row_reason'))
        batch_op.drop_index(batch_op.f('ix_quarantined_row_fingerprint'))

    op.drop_table('quarantined_row')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_subject_id_occurred_at')
        batch_op.drop_index(batch_op.f('ix_interaction_record_id'))

    op.drop_table('interaction')
    with op.batch_alter_table('ingest_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingest_run_source_id'))
        batch_op.drop_index(batch_op.f('ix_ingest_run_content_sha256'))

    op.drop_table('ingest_run')

