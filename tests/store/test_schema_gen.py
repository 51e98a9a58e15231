"""inbox/store/tables.py is generated from the models (`python -m inbox.store.gen`): never edited by hand."""

from __future__ import annotations

import subprocess
import sys

from inbox.store import gen


def test_the_committed_tables_are_what_the_models_generate() -> None:
    assert gen.TARGET.read_text(encoding="utf-8") == gen.render(), "inbox/store/tables.py is out of date: run python -m inbox.store.gen"


def test_the_generated_tables_have_every_model_table_and_column() -> None:
    from sqlmodel import SQLModel

    import inbox.store.models  # noqa: F401
    from inbox.store import tables

    assert list(tables.metadata.tables) == list(SQLModel.metadata.tables)
    for name, full in SQLModel.metadata.tables.items():
        assert [c.name for c in tables.metadata.tables[name].columns] == [c.name for c in full.columns], name


def test_check_mode_says_whether_the_file_is_current(tmp_path, monkeypatch) -> None:
    assert subprocess.run([sys.executable, "-m", "inbox.store.gen", "--check"], capture_output=True).returncode == 0
    stale = tmp_path / "tables.py"
    stale.write_text(gen.render().replace('sa.Column("text", sa.String()),', ""), encoding="utf-8")
    monkeypatch.setattr(gen, "TARGET", stale)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert stale.read_text(encoding="utf-8") == gen.render()
