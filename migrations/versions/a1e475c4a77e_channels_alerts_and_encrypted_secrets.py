"""notification channels, job alert rules, deliveries; variable values encrypted at rest

Revision ID: a1e475c4a77e
Revises: fc68189d3d9a
Create Date: 2026-11-30 10:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

from supertest import encryption


# revision identifiers, used by Alembic.
revision = 'a1e475c4a77e'
down_revision = 'fc68189d3d9a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('channels',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('target_hint', sa.String(length=200), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('job_alerts',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('after_failures', sa.Integer(), nullable=False),
    sa.Column('on_recovery', sa.Boolean(), nullable=False),
    sa.Column('on_missed', sa.Boolean(), nullable=False),
    sa.Column('every_failure', sa.Boolean(), nullable=False),
    sa.Column('remind_hours', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('failures_in_row', sa.Integer(), nullable=False),
    sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id')
    )
    op.create_table('job_alert_channels',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('channel_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['job_alerts.job_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'channel_id')
    )
    op.create_index('ix_job_alert_channels_channel_id', 'job_alert_channels', ['channel_id'])
    op.create_table('deliveries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('event', sa.String(length=12), nullable=False),
    sa.Column('channel_id', sa.String(length=36), nullable=True),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_deliveries_created', 'deliveries', ['created_at', 'id'])
    op.create_index('ix_deliveries_job_created', 'deliveries', ['job_id', 'created_at'])
    op.create_index('ix_deliveries_channel_created', 'deliveries', ['channel_id', 'created_at'])
    # Variable values were plain text: encrypt each with the app's newest key (flask db upgrade runs
    # inside the app, so its ENCRYPTION_KEYS are there). Plain SQL over ids: no model, no ORM session.
    _rewrite(encryption.encrypt)


def downgrade():
    _rewrite(encryption.decrypt)
    op.drop_index('ix_deliveries_channel_created', table_name='deliveries')
    op.drop_index('ix_deliveries_job_created', table_name='deliveries')
    op.drop_index('ix_deliveries_created', table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_index('ix_job_alert_channels_channel_id', table_name='job_alert_channels')
    op.drop_table('job_alert_channels')
    op.drop_table('job_alerts')
    op.drop_table('channels')


def _rewrite(change):
    connection = op.get_bind()
    variables = sa.table('variables', sa.column('id', sa.String), sa.column('value', sa.Text))
    for row in connection.execute(sa.select(variables.c.id, variables.c.value)).all():
        connection.execute(variables.update().where(variables.c.id == row.id).values(value=change(row.value)))
