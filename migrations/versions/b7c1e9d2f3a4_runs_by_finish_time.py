"""runs by finish time: /metrics adds up only the runs that ended lately, and the dashboard's last day

/metrics read every run twice per scrape (200 ms at 100,000 runs; bench/history.py). It now keeps
the sums of runs that ended before a recent boundary and adds up, per scrape, the runs that ended
since, found by this index; the dashboard's failures of the last 24 hours use it too.

Revision ID: b7c1e9d2f3a4
Revises: 5a4d5e7b1a11
Create Date: 2026-11-30 13:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b7c1e9d2f3a4'
down_revision = '5a4d5e7b1a11'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_finished', ['finished_at'], unique=False)


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_finished')
