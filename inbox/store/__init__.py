"""The store: engine, schema, migrations, the SQLite writer's lock and checkpointer, fast paths.

`open_store(url)` is the way in: an engine with the store's settings (`inbox.store.engine`) on a
database brought to the newest migration (`inbox.store.migrate`, loaded only when one is due).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inbox.store.engine import make_engine

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def ensure_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration (a new or empty database is created)."""
    from inbox.store import migrate

    migrate.upgrade(engine)


def open_store(url: str) -> Engine:
    engine = make_engine(url)
    ensure_schema(engine)
    return engine
