"""Schema migrations. Placeholder until Alembic lands: creates the tables from the models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def upgrade(engine: Engine) -> None:
    from sqlmodel import SQLModel

    import inbox.models  # noqa: F401  (registers the tables)

    SQLModel.metadata.create_all(engine)
