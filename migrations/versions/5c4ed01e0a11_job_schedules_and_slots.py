"""job schedules and their slots: cron on jobs, what became of each time it came due

Revision ID: 5c4ed01e0a11
Revises: ad40c1f11e50
Create Date: 2026-11-30 10:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c4ed01e0a11'
down_revision = 'ad40c1f11e50'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_schedules',
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('cron', sa.String(length=200), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('overlap', sa.String(length=10), nullable=False),
        sa.Column('grace_seconds', sa.Integer(), nullable=False),
        sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id'),
    )
    op.create_index('ix_job_schedules_enabled', 'job_schedules', ['enabled'])
    op.create_table(
        'schedule_slots',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('late_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id', 'scheduled_for', name='uq_schedule_slots_job_slot'),
    )
    op.create_index('ix_schedule_slots_state', 'schedule_slots', ['state'])
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('scheduled_for')
    op.drop_index('ix_schedule_slots_state', table_name='schedule_slots')
    op.drop_table('schedule_slots')
    op.drop_index('ix_job_schedules_enabled', table_name='job_schedules')
    op.drop_table('job_schedules')
