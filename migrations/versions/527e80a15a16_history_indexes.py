"""history indexes: a test's runs in order without a join, runs by status and by job newest first

A long history (100,000 runs; bench/history.py) made the Tests page take seconds: each test's strip
joined its run tests to runs to order them. Run tests now keep their run's created_at, indexed with
the test; runs are indexed for their lists filtered by status and by job. The single-column indexes
these start with are dropped: the new ones serve their lookups too.

Revision ID: 527e80a15a16
Revises: 9ace94949285
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '527e80a15a16'
down_revision = '9ace94949285'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_created_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE run_tests SET run_created_at = (SELECT runs.created_at FROM runs WHERE runs.id = run_tests.run_id)")
    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.alter_column('run_created_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_index('ix_run_tests_test_id')
        batch_op.create_index('ix_run_tests_test_history', ['test_id', 'run_created_at', 'run_id', 'status'],
                              unique=False)

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status')
        batch_op.drop_index('ix_runs_job_id')
        batch_op.create_index('ix_runs_status_created', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_runs_job_created', ['job_id', 'created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_job_created')
        batch_op.drop_index('ix_runs_status_created')
        batch_op.create_index('ix_runs_job_id', ['job_id'], unique=False)
        batch_op.create_index('ix_runs_status', ['status'], unique=False)

    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.drop_index('ix_run_tests_test_history')
        batch_op.create_index('ix_run_tests_test_id', ['test_id'], unique=False)
        batch_op.drop_column('run_created_at')
