"""staff users, login codes, outbox, oauth token families, refresh tokens, authorization codes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 00:50:22.966773
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_authorization_code',
    sa.Column('code_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('principal', sa.String(length=80), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_oauth_authorization_code'))
    )
    with op.batch_alter_table('oauth_authorization_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_authorization_code_expires_at'), ['expires_at'], unique=False)

    op.create_table('oauth_token_family',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('principal', sa.String(length=80), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_token_family'))
    )
    with op.batch_alter_table('oauth_token_family', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_token_family_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_family_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_family_principal'), ['principal'], unique=False)

    op.create_table('oauth_refresh_token',
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('family_id', sa.Uuid(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['family_id'], ['oauth_token_family.id'], name=op.f('fk_oauth_refresh_token_family_id_oauth_token_family'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_oauth_refresh_token'))
    )
    with op.batch_alter_table('oauth_refresh_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_refresh_token_family_id'), ['family_id'], unique=False)

    op.create_table('outbox_message',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enc_message', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], name=op.f('fk_outbox_message_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_message'))
    )
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_message_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_subject_id'), ['subject_id'], unique=False)

    op.create_table('staff_user',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('department', sa.String(length=32), nullable=True),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('totp_subject_id', sa.Uuid(), nullable=True),
    sa.Column('enc_totp_secret', sa.LargeBinary(), nullable=True),
    sa.Column('last_totp_step', sa.Integer(), nullable=True),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['totp_subject_id'], ['subject.id'], name=op.f('fk_staff_user_totp_subject_id_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_user')),
    sa.UniqueConstraint('username', name=op.f('uq_staff_user_username'))
    )
    op.create_table('login_code',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email_token', sa.LargeBinary(length=16), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=True),
    sa.Column('code_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['record_id'], ['source_record.id'], name=op.f('fk_login_code_record_id_source_record'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_code'))
    )
    with op.batch_alter_table('login_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_code_email_token'), ['email_token'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_code_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_code_record_id'), ['record_id'], unique=False)

    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_type', sa.String(length=16), nullable=False, server_default='confidential'))
        batch_op.add_column(sa.Column('redirect_uris', sa.Text(), nullable=False, server_default=''))
        batch_op.alter_column('secret_hash',
               existing_type=sa.LargeBinary(length=32),
               nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.alter_column('secret_hash',
               existing_type=sa.LargeBinary(length=32),
               nullable=False)
        batch_op.drop_column('redirect_uris')
        batch_op.drop_column('client_type')

    with op.batch_alter_table('login_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_code_record_id'))
        batch_op.drop_index(batch_op.f('ix_login_code_expires_at'))
        batch_op.drop_index(batch_op.f('ix_login_code_email_token'))

    op.drop_table('login_code')
    op.drop_table('staff_user')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_message_subject_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_message_created_at'))

    op.drop_table('outbox_message')
    with op.batch_alter_table('oauth_refresh_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_token_family_id'))

    op.drop_table('oauth_refresh_token')
    with op.batch_alter_table('oauth_token_family', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_token_family_principal'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_family_expires_at'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_family_client_id'))

    op.drop_table('oauth_token_family')
    with op.batch_alter_table('oauth_authorization_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_authorization_code_expires_at'))

    op.drop_table('oauth_authorization_code')
