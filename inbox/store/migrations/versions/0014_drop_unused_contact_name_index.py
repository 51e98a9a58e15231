"""drop the contact index on display names: nothing reads it

A display name is not an identity, so no dedup rule (nor any command) looks a contact up by name:
candidates are found by handle, person and contact id (`inbox.dedup.candidates`). The index was
still written for every new contact a sync stores.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_contact_name", table_name="contact")


def downgrade() -> None:
    op.create_index("ix_contact_name", "contact", ["name"], unique=False)
