"""register_leases: which event stream owns a (gateway, register) (simulators.core.fence)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "register_leases",
        sa.Column("lease_key", sa.String(length=200), nullable=False),
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lease_key"),
    )


def downgrade() -> None:
    op.drop_table("register_leases")
