"""run time limits, heartbeats and restarts

Revision ID: 895c0c58b376
Revises: cb970cd1aa70
Create Date: 2026-11-25 16:59:40.075940

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '895c0c58b376'
down_revision = 'cb970cd1aa70'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timeout_ms', sa.Integer(), nullable=True))

    with op.batch_alter_table('runs', schema=None) as batch_op:
        # Runs made before this revision had the default test limit.
        batch_op.add_column(sa.Column('timeout_ms', sa.Integer(), nullable=False, server_default='900000'))
        batch_op.add_column(sa.Column('restarted_because', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('worker')
        batch_op.drop_column('restarted_because')
        batch_op.drop_column('timeout_ms')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('timeout_ms')

