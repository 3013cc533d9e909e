"""users.security_stamp: API tokens carry it and stop working when it changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A random stamp for every existing user (128 bits, like app.models.user.new_security_stamp).
RANDOM_STAMP = {
    "postgresql": "replace(gen_random_uuid()::text, '-', '')",
    "sqlite": "lower(hex(randomblob(16)))",
}


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("security_stamp", sa.String(length=32), nullable=True))
    dialect = op.get_bind().dialect.name
    op.execute(f"UPDATE users SET security_stamp = {RANDOM_STAMP[dialect]}")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("security_stamp", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("security_stamp")
