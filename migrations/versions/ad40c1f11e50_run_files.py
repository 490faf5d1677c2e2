"""run files: an ad-hoc run's support files and config (POST /api/runs), its workers; test paths up to 500 characters

Revision ID: ad40c1f11e50
Revises: a1e475c4a77e
Create Date: 2026-12-03 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ad40c1f11e50'
down_revision = 'a1e475c4a77e'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'run_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('run_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_files_run_id'), ['run_id'], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('workers', sa.Integer(), nullable=True))
    # An ad-hoc run's test is named by its path in the suite (tests/adding/add.spec.ts), not a title.
    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.alter_column('filename', existing_type=sa.String(length=100), type_=sa.String(length=500),
                              existing_nullable=False)


def downgrade():
    with op.batch_alter_table('run_tests', schema=None) as batch_op:
        batch_op.alter_column('filename', existing_type=sa.String(length=500), type_=sa.String(length=100),
                              existing_nullable=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('workers')
    with op.batch_alter_table('run_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_files_run_id'))
    op.drop_table('run_files')
