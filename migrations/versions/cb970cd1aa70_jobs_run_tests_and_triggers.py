"""jobs, run tests and triggers

Every run gets a copy of the test(s) it runs (run_tests); runs made before this revision get
theirs from the test they point to, and their results are linked to it.

Revision ID: cb970cd1aa70
Revises: 42cfdc19521d
Create Date: 2026-11-25 16:20:51.836950

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'cb970cd1aa70'
down_revision = '42cfdc19521d'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('job_tests',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('test_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['test_id'], ['tests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'position')
    )
    with op.batch_alter_table('job_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_tests_test_id'), ['test_id'], unique=False)

    op.create_table('run_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('test_id', sa.String(length=36), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('filename', sa.String(length=100), nullable=False),
    sa.Column('script', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['test_id'], ['tests.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_tests_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_tests_test_id'), ['test_id'], unique=False)

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('trigger', sa.String(length=12), nullable=False, server_default='api'))
        batch_op.add_column(sa.Column('retries', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_runs_job_id'), ['job_id'], unique=False)
        batch_op.create_foreign_key('fk_runs_job_id_jobs', 'jobs', ['job_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_test_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_test_results_run_test_id'), ['run_test_id'], unique=False)
        batch_op.create_foreign_key('fk_test_results_run_test_id_run_tests', 'run_tests', ['run_test_id'], ['id'],
                                    ondelete='CASCADE')

    with op.batch_alter_table('tests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE tests SET updated_at = created_at")
    with op.batch_alter_table('tests', schema=None) as batch_op:
        batch_op.alter_column('updated_at', nullable=False)

    op.execute("""
        INSERT INTO run_tests (run_id, position, test_id, title, filename, script, status)
        SELECT runs.id, 0, tests.id, runs.title, 'test.spec.ts', tests.script, runs.status
        FROM runs JOIN tests ON tests.id = runs.test_id
    """)
    op.execute("""
        UPDATE test_results SET run_test_id =
            (SELECT run_tests.id FROM run_tests WHERE run_tests.run_id = test_results.run_id)
    """)



def downgrade():
    with op.batch_alter_table('tests', schema=None) as batch_op:
        batch_op.drop_column('updated_at')

    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.drop_constraint('fk_test_results_run_test_id_run_tests', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_test_results_run_test_id'))
        batch_op.drop_column('run_test_id')

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_runs_job_id_jobs', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_runs_job_id'))
        batch_op.drop_column('retries')
        batch_op.drop_column('trigger')
        batch_op.drop_column('job_id')

    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_tests_test_id'))
        batch_op.drop_index(batch_op.f('ix_run_tests_run_id'))

    op.drop_table('run_tests')
    with op.batch_alter_table('job_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_tests_test_id'))

    op.drop_table('job_tests')
    op.drop_table('jobs')
