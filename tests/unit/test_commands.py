"""The CLI's shared pieces: the one JSON-or-human switch, and the config report it renders."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from commands import JsonOpt, emit, state
from inbox.settings import parse_settings
from inbox.settings_report import check, effective


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, json_: bool = typer.Option(False, "--json")) -> None:
        state(ctx).json = json_

    @app.command("thing")
    def thing(ctx: typer.Context, json_: bool = JsonOpt) -> None:
        emit(ctx, lambda: {"answer": 42}, lambda: print("forty-two"))

    return app


@pytest.mark.parametrize(("args", "json_out"), [(["thing"], False), (["thing", "--json"], True), (["--json", "thing"], True)])
def test_emit_takes_the_commands_json_or_the_global_one(args: list[str], json_out: bool) -> None:
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    if json_out:
        assert json.loads(res.output) == {"answer": 42}
    else:
        assert res.output == "forty-two\n"


def test_check_names_every_unset_secret_and_effective_masks_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INBOX_T_FB", raising=False)
    settings = parse_settings({"database": "postgresql+psycopg://u:hunter2@db/inbox", "accounts": [
        {"name": "fb-main", "channel": "facebook", "page_id": "1001", "access_token_env": "INBOX_T_FB"}]}, "inbox.toml")
    report = check(None, settings)
    assert report["ok"] is False
    assert report["errors"] == ["account 'fb-main': environment variable INBOX_T_FB is not set"]
    assert report["accounts"][0]["missing_env"] == ["INBOX_T_FB"]
    view = effective(settings)
    assert "hunter2" not in json.dumps(view)
    secret = view["accounts"][0]["access_token_env"]
    assert (secret["env"], secret["set"]) == ("INBOX_T_FB", False)

    monkeypatch.setenv("INBOX_T_FB", "EAAGm0PX4ZCpsBAKZAbcDEF1234567890ZZxyzQWERTY")
    assert check(None, settings)["ok"] is True
    assert "EAAGm0PX4ZCpsBAKZAbcDEF1234567890ZZxyzQWERTY" not in json.dumps(effective(settings))
