"""initial vault tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 20:39:53.397887
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('source',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('line_of_business', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source')),
    sa.UniqueConstraint('name', name=op.f('uq_source_name'))
    )
    op.create_table('subject',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('kek_version', sa.Integer(), nullable=True),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('shredded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject'))
    )
    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_kek_version'), ['kek_version'], unique=False)

    op.create_table('source_record',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('natural_key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enc_source_record_id', sa.LargeBinary(), nullable=False),
    sa.Column('enc_first_name', sa.LargeBinary(), nullable=False),
    sa.Column('enc_last_name', sa.LargeBinary(), nullable=False),
    sa.Column('enc_full_name', sa.LargeBinary(), nullable=False),
    sa.Column('enc_date_of_birth', sa.LargeBinary(), nullable=False),
    sa.Column('enc_email', sa.LargeBinary(), nullable=False),
    sa.Column('enc_phone', sa.LargeBinary(), nullable=False),
    sa.Column('enc_street_number', sa.LargeBinary(), nullable=False),
    sa.Column('enc_address_line1', sa.LargeBinary(), nullable=False),
    sa.Column('enc_address_line2', sa.LargeBinary(), nullable=False),
    sa.Column('enc_city', sa.LargeBinary(), nullable=False),
    sa.Column('enc_postcode', sa.LargeBinary(), nullable=False),
    sa.Column('enc_state', sa.LargeBinary(), nullable=False),
    sa.Column('enc_country', sa.LargeBinary(), nullable=False),
    sa.Column('enc_national_id', sa.LargeBinary(), nullable=False),
    sa.Column('enc_attributes', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], name=op.f('fk_source_record_source_id_source')),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_source_record_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_record')),
    sa.UniqueConstraint('source_id', 'natural_key', name=op.f('uq_source_record_source_id_natural_key'))
    )
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_record_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_source_record_subject_id'), ['subject_id'], unique=False)

    op.create_table('blind_index',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('token', sa.LargeBinary(length=16), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['source_record.id'], name=op.f('fk_blind_index_record_id_source_record'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_blind_index_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blind_index'))
    )
    with op.batch_alter_table('blind_index', schema=None) as batch_op:
        batch_op.create_index('ix_blind_index_kind_token', ['kind', 'token'], unique=False)
        batch_op.create_index(batch_op.f('ix_blind_index_record_id'), ['record_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_blind_index_subject_id'), ['subject_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('blind_index', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_blind_index_subject_id'))
        batch_op.drop_index(batch_op.f('ix_blind_index_record_id'))
        batch_op.drop_index('ix_blind_index_kind_token')

    op.drop_table('blind_index')
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_record_subject_id'))
        batch_op.drop_index(batch_op.f('ix_source_record_source_id'))

    op.drop_table('source_record')
    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_kek_version'))

    op.drop_table('subject')
    op.drop_table('source')

