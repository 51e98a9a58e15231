"""Write `inbox/store/tables.py`, the plain Core tables of the CLI's fast paths, from the models.

`python -m inbox.store.gen` rewrites the file; `python -m inbox.store.gen --check` exits 1 when the
committed file is not what the models give (tests/store/test_schema_gen.py runs the same check).
Each table keeps its name, its columns in order, their types and primary keys: what Core statements
need. Constraints, indexes and defaults stay with the models and the migrations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET = Path(__file__).with_name("tables.py")

HEADER = '''"""Plain SQLAlchemy Core tables for the CLI's hot paths (list, show, search, claim, triage writes).

GENERATED from `inbox/store/models.py` by `python -m inbox.store.gen`: do not edit; change the
models and run it again (tests/store/test_schema_gen.py fails while this file is out of date).
The same tables as the models, without SQLModel: building the SQLModel classes (pydantic + ORM
mapping) costs ~0.2 s at every start, which is most of the budget of `inbox list`.
"""

from __future__ import annotations

import sqlalchemy as sa

from inbox.store.types import UTCDateTime

metadata = sa.MetaData()
'''

# Column types written as `sa.<Name>()`; anything else is refused rather than guessed at.
_PLAIN_TYPES = (sa.Integer, sa.BigInteger, sa.Boolean, sa.Float, sa.JSON, sa.LargeBinary, sa.Text)


def _type(column: sa.Column[object]) -> str:
    from inbox.store.types import UTCDateTime

    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "UTCDateTime()"
    if isinstance(kind, sa.types.TypeDecorator):  # SQLModel's AutoString: a String underneath
        kind = kind.impl_instance
    if type(kind) is sa.String:
        return f"sa.String({kind.length})" if kind.length is not None else "sa.String()"
    for plain in _PLAIN_TYPES:
        if type(kind) is plain:
            return f"sa.{plain.__name__}()"
    raise TypeError(f"{column.table.name}.{column.name}: no Core spelling for column type {kind!r}; add one to inbox/store/gen.py")


def _column(column: sa.Column[object]) -> str:
    key = ", primary_key=True" if column.primary_key else ""
    return f'    sa.Column("{column.name}", {_type(column)}{key}),'


def render() -> str:
    """The text of tables.py for the models as they are now."""
    from sqlmodel import SQLModel

    import inbox.store.models  # noqa: F401  (defines the tables on SQLModel.metadata)

    parts = [HEADER]
    for table in SQLModel.metadata.tables.values():  # in the models' order
        lines = [f"{table.name} = sa.Table(", f'    "{table.name}",', "    metadata,"]
        lines += [_column(c) for c in table.columns]
        lines.append(")")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inbox.store.gen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 when tables.py is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if args.check:
        if current != text:
            print(f"{TARGET} is out of date: run python -m inbox.store.gen", file=sys.stderr)
            return 1
        return 0
    if current != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
