"""job retention days: how long a job's finished runs are kept, over RUN_RETENTION_DAYS

Revision ID: fc68189d3d9a
Revises: 527e80a15a16
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'fc68189d3d9a'
down_revision = '527e80a15a16'
branch_labels = None
depends_on = None


def upgrade():
    # Null: the RUN_RETENTION_DAYS setting applies, as it does to every job made before this.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_days', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('retention_days')
