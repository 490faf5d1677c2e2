"""run shards: a job's run split over several workers, balanced by its tests' past durations

Revision ID: 5a4d5e7b1a11
Revises: 5c4ed01e0a11
Create Date: 2026-11-30 11:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5a4d5e7b1a11'
down_revision = '5c4ed01e0a11'
branch_labels = None
depends_on = None


def upgrade():
    # 1: every job and run made before this is unsharded.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shards', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shards', sa.Integer(), server_default='1', nullable=False))
    op.create_table(
        'run_shards',
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('index', sa.Integer(), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('expected_ms', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('worker', sa.String(length=100), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('report_store', sa.String(length=10), nullable=True),
        sa.Column('blob_store', sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'index'),
    )


def downgrade():
    op.drop_table('run_shards')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('shards')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('shards')
