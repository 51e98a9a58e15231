"""Config: every bad-file case is one line naming file, key and expectation (exit 3); secrets never shown."""

from __future__ import annotations

import io
import json
import logging
import re
import tomllib
from pathlib import Path

import pytest

import cli
from connectors.redact import redact, register_secret
from inbox.settings import (
    AccountSettings,
    DedupSettings,
    ReplySettings,
    WebhookSettings,
    Settings,
    SlaSettings,
    SyncSettings,
    TriageRule,
    load_settings,
    parse_settings,
)
from inbox.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FB = '[[accounts]]\nname = "fb-main"\nchannel = "facebook"\npage_id = "1001"\naccess_token_env = "INBOX_T_FB"\n'
GRAPH_TOKEN = "EAAGm0PX4ZCpsBAKZAbcDEF1234567890ZZxyzQWERTY"


def _write(tmp_path: Path, text: str | bytes, name: str = "inbox.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ── each bad-file case: ConfigError naming file, key and expectation ─────────────────────────

CASES = [
    ("missing key", '[[accounts]]\nchannel = "facebook"\npage_id = "1"\naccess_token_env = "T"\n', ["accounts[0].name", "missing key"]),
    ("missing platform id", '[[accounts]]\nname = "fb"\nchannel = "facebook"\naccess_token_env = "T"\n', ["accounts[0] (fb)", "needs 'page_id'"]),
    ("wrong type", '[sync]\ninterval_seconds = "fast"\n', ["sync.interval_seconds", "expected an integer", "'fast'"]),
    ("wrong type bool", '[replies]\nconfirm = 3\n', ["replies.confirm", "expected true or false"]),
    ("unknown channel", '[[accounts]]\nname = "tt"\nchannel = "tiktok"\naccess_token_env = "T"\n', ["accounts[0] (tt).channel", "expected one of", "'instagram'", "'tiktok'"]),
    ("duplicate account name", FB + FB.replace('"1001"', '"1002"'), ["accounts", "duplicate account name 'fb-main'"]),
    ("unknown key", 'databse = "x.db"\n', ["databse", "unknown key", "did you mean 'database'"]),
    ("invalid TOML", 'database = "x.db"\nlog_level = \n', ["invalid TOML", "line 2"]),
    ("literal token", FB.replace('access_token_env = "INBOX_T_FB"', f'access_token = "{GRAPH_TOKEN}"'), ["accounts[0] (fb-main)", "'access_token' must not be written", "access_token_env"]),
    ("token in an _env key", FB.replace('"INBOX_T_FB"', f'"{GRAPH_TOKEN}"'), ["accounts[0] (fb-main).access_token_env", "name of an environment variable"]),
    ("unsupported database", 'database = "mysql://care:EAAdbpass1234567890@db/inbox"\n', ["database", "expected a SQLite file path"]),
    ("bad regex", '[dedup]\norder_patterns = ["INV/(["]\n', ["dedup.order_patterns", "invalid regular expression"]),
    ("in-memory SQLite", 'database = "sqlite://"\n', ["database", "needs a file (sqlite:///PATH)", "in memory"]),
    ("in-memory SQLite by name", 'database = "sqlite:///:memory:"\n', ["database", "needs a file (sqlite:///PATH)"]),
    ("empty database", 'database = ""\n', ["database", "empty"]),
    ("unknown time zone", 'timezone = "Mars/Olympus"\n', ["timezone: unknown time zone 'Mars/Olympus'"]),
]


@pytest.mark.parametrize("text,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_precise_error(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = info.value.message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message
    assert "\n" not in message
    assert GRAPH_TOKEN not in message and "EAAdbpass" not in message  # secrets are never echoed back
    for given in re.findall(r"\(got ('[^']*')\)", message):  # what was given, quoted once
        assert message.count(given) == 1, message


@pytest.mark.parametrize("text,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_exits_3_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]) -> None:
    path = _write(tmp_path, text)
    code, out, err = _run(["--config", str(path), "config", "check"], capsys)
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ")
    assert "Traceback" not in err and GRAPH_TOKEN not in err


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file: IsADirectoryError"):
        load_settings(tmp_path)
    bad = _write(tmp_path, b'database = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"cannot read config file: UnicodeDecodeError") as info:
        load_settings(bad)
    assert info.value.message.startswith(str(bad))


def test_config_path_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    for argv in (["config", "check"], ["config", "show"], ["config", "path"], ["db", "status"]):
        code, out, err = _run(["--config", str(missing), *argv], capsys)
        assert (code, out) == (3, "")
        assert err == f"error: {missing}: config file not found (pass --config PATH or set INBOX_CONFIG)\n"


def test_missing_env_var_is_reported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("INBOX_T_FB", raising=False)
    path = _write(tmp_path, FB)
    settings = load_settings(path)
    with pytest.raises(ConfigError, match="environment variable INBOX_T_FB is not set"):
        settings.accounts[0].to_spec()
    code, out, err = _run(["--config", str(path), "config", "check"], capsys)
    assert code == 3 and "INBOX_T_FB is not set" in err
    code, out, _ = _run(["--config", str(path), "--json", "config", "check"], capsys)
    report = json.loads(out)
    assert code == 3 and report["ok"] is False
    assert report["accounts"][0]["missing_env"] == ["INBOX_T_FB"]

    monkeypatch.setenv("INBOX_T_FB", GRAPH_TOKEN)
    code, out, err = _run(["--config", str(path), "config", "check"], capsys)
    assert (code, err) == (0, "") and out.startswith(f"ok: {path}: 1 account")
    code, out, _ = _run(["--config", str(path), "config", "check", "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"] is True and GRAPH_TOKEN not in out


def test_client_side_pacing_defaults_to_metas_two_calls_per_second() -> None:
    env = {"INBOX_T_FB": GRAPH_TOKEN, "INBOX_T_X": "x-token"}
    fb = parse_settings(tomllib.loads(FB), "inbox.toml").accounts[0]
    assert fb.to_spec(env).min_interval == pytest.approx(0.5)
    assert fb.model_copy(update={"calls_per_second": 50}).to_spec(env).min_interval == pytest.approx(0.02)
    x = AccountSettings(name="x-main", channel="x", user_id="7", access_token_env="INBOX_T_X")
    assert x.to_spec(env).min_interval == 0.0  # X budgets come from its headers, not a fixed pace


def test_disabled_account_with_unset_variable_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("INBOX_T_FB", raising=False)
    path = _write(tmp_path, FB + "enabled = false\n")
    code, out, err = _run(["--config", str(path), "config", "check"], capsys)
    assert code == 0 and err.startswith("warning: ") and "INBOX_T_FB" in err


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, then $INBOX_CONFIG, then ./inbox.toml, then ~/.config/inbox/config.toml."""
    home = tmp_path / "home"
    (home / ".config" / "inbox").mkdir(parents=True)
    _write(home / ".config" / "inbox", 'agent = "home"\n', "config.toml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("INBOX_CONFIG", raising=False)
    monkeypatch.chdir(work)
    assert load_settings().agent == "home"
    _write(work, 'agent = "cwd"\n')
    assert load_settings().agent == "cwd"
    env = _write(tmp_path, 'agent = "env"\n', "env.toml")
    monkeypatch.setenv("INBOX_CONFIG", str(env))
    assert load_settings().agent == "env"
    explicit = _write(tmp_path, 'agent = "explicit"\n', "explicit.toml")
    assert load_settings(explicit).agent == "explicit"
    monkeypatch.setenv("INBOX_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="gone.toml: config file not found"):
        load_settings()
    monkeypatch.setenv("INBOX_CONFIG", str(env))
    for empty in ("", "  "):  # `--config "$CFG"` with CFG unset names no file: never fall back to another one
        with pytest.raises(ConfigError, match="--config is empty"):
            load_settings(empty)


def test_database_path_relative_to_the_file_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)
    settings = load_settings(_write(tmp_path, 'database = "data/inbox.db"\n'))
    assert settings.database_url() == f"sqlite:///{tmp_path.resolve() / 'data' / 'inbox.db'}"
    monkeypatch.setenv("INBOX_DATABASE_URL", "postgresql+psycopg://care@db/inbox")
    assert settings.database_url() == "postgresql+psycopg://care@db/inbox"
    for memory in ("sqlite:///", "sqlite://", "sqlite:///:memory:"):  # `sqlite:///$UNSET`: a store lost at exit
        monkeypatch.setenv("INBOX_DATABASE_URL", memory)
        with pytest.raises(ConfigError, match=r"^\$INBOX_DATABASE_URL: a SQLite URL needs a file"):
            settings.database_url()


def test_a_home_directory_in_a_database_url_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sqlite:///~/inbox.db` is the file in the home directory, as the bare path `~/inbox.db` is,
    from the config file or the environment; not a directory named `~` beside the config."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)
    home_db = f"sqlite:///{tmp_path / 'home' / 'inbox.db'}"
    for value in ("~/inbox.db", "sqlite:///~/inbox.db"):
        settings = load_settings(_write(tmp_path, f'database = "{value}"\n'))
        assert settings.database_url() == home_db, value
    monkeypatch.setenv("INBOX_DATABASE_URL", "sqlite:///~/inbox.db")
    assert settings.database_url() == home_db


# ── config.example.toml ───────────────────────────────────────────────────────────────────────


def test_example_config_loads_and_documents_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "config.example.toml"
    text = path.read_text(encoding="utf-8")
    settings = parse_settings(tomllib.loads(text), str(path))
    channels = {(a.channel.value, a.flavour) for a in settings.accounts}
    assert {c for c, _ in channels} == {"facebook", "instagram", "x"}
    assert {("instagram", "instagram_login"), ("x", "oauth1")} <= channels
    for model in (Settings, SyncSettings, DedupSettings, SlaSettings, TriageRule, ReplySettings, WebhookSettings, AccountSettings):
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            # Set, or commented out with its default (`key = ...`, `# key = ...`), or a table header.
            pattern = rf"^\s*(#\s*)?({name}\s*=|\[\[?([\w.]+\.)?{name}\]\]?)"
            assert re.search(pattern, text, re.MULTILINE), f"{model.__name__}.{name} is not documented"
    for section in ("[sync]", "[dedup]", "[sla]", "[[rules]]", "[replies]", "[templates]", "[webhooks]", "[[accounts]]"):
        assert re.search(rf"^#?\s*{re.escape(section)}", text, re.MULTILINE), section
    from inbox.replies.templates import fields

    assert settings.templates
    for template in settings.templates.values():
        fields(template)  # only the variables `inbox reply --template` fills in
    # Only names of variables in it, no secret values.
    for acc in settings.accounts:
        for key in acc.secret_env_keys():
            assert re.fullmatch(r"[A-Z][A-Z0-9_]+", getattr(acc, key))


# ── secrets: masked everywhere ────────────────────────────────────────────────────────────────


def test_config_show_never_prints_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    x_oauth1 = (
        '[[accounts]]\nname = "x-main"\nchannel = "x"\nuser_id = "55"\nflavour = "oauth1"\n'
        'consumer_key_env = "INBOX_T_CK"\nconsumer_secret_env = "INBOX_T_CS"\n'
        'access_token_env = "INBOX_T_AT"\naccess_token_secret_env = "INBOX_T_ATS"\n'
    )
    path = _write(tmp_path, 'database = "postgresql+psycopg://care:pg-Secret-77@db.internal/inbox"\n' + FB + x_oauth1)
    secrets = {"INBOX_T_FB": GRAPH_TOKEN, "INBOX_T_CK": "ck-0123456789abcdef", "INBOX_T_CS": "cs-fedcba9876543210xyz", "INBOX_T_AT": "55-atATatATatATatAT99"}
    for var, value in secrets.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("INBOX_T_ATS", raising=False)
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)

    code, text, _ = _run(["--config", str(path), "config", "show"], capsys)
    assert code == 0
    code, js, _ = _run(["--config", str(path), "--json", "config", "show"], capsys)
    assert code == 0
    for output in (text, js):
        for value in [*secrets.values(), "pg-Secret-77"]:
            assert value not in output
    assert 'access_token_env = "INBOX_T_FB"  # set (****' in text
    assert 'access_token_secret_env = "INBOX_T_ATS"  # NOT SET' in text
    assert "care:****@db.internal" in text
    data = json.loads(js)
    fb = data["accounts"][0]
    assert fb["access_token_env"] == {"env": "INBOX_T_FB", "set": True, "masked": "****" + GRAPH_TOKEN[-4:]}
    assert data["accounts"][1]["access_token_secret_env"]["set"] is False
    assert fb["base_url"].startswith("https://graph.facebook.com/v2")
    # The TOML printed is itself valid and reloads to the same settings (secrets are names).
    reloaded = tomllib.loads("\n".join(line for line in text.splitlines()))
    assert reloaded["accounts"][1]["consumer_key_env"] == "INBOX_T_CK"
    assert reloaded["sync"]["interval_seconds"] == data["sync"]["interval_seconds"]


def test_redact_masks_tokens_in_urls_headers_and_known_secrets() -> None:
    url = "https://graph.facebook.com/v23.0/me/conversations?fields=id&access_token=EAAxyz123456789&after=QVFI"
    assert redact(url) == "https://graph.facebook.com/v23.0/me/conversations?fields=id&access_token=****&after=QVFI"
    assert redact("Authorization: Bearer AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid") == "Authorization: Bearer ****"
    assert redact('{"access_token": "IGQVJ-abcdef"}') == '{"access_token": "****"}'
    register_secret("oauth1-secret-value-42")
    assert redact("signing with oauth1-secret-value-42 now") == "signing with **** now"
    assert redact("") == ""


def test_log_lines_are_redacted() -> None:
    from inbox.runtime.logging import configure

    stream = io.StringIO()
    handler = configure("INFO", stream=stream)
    try:
        log = logging.getLogger("inbox.test_config")
        log.info("GET %s", "https://graph.facebook.com/v23.0/me?access_token=EAAsecret999999")
        log.warning("header Bearer %s", "AAAAtokenvalue")
        log.warning("customer said %s", "hi\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m there")
        try:
            raise RuntimeError("failed https://x/y?access_token=EAAinexc12345")
        except RuntimeError:
            log.exception("boom")
        configure("INFO", json=True, stream=stream)
        log.info("json %s", "access_token=EAAjson123456")
    finally:
        logging.getLogger().removeHandler(handler)
        for h in [h for h in logging.getLogger().handlers if getattr(h, "_inbox_handler", False)]:
            logging.getLogger().removeHandler(h)
    out = stream.getvalue()
    for secret in ("EAAsecret999999", "AAAAtokenvalue", "EAAinexc12345", "EAAjson123456"):
        assert secret not in out
    assert "access_token=****" in out and "Bearer ****" in out
    assert "customer said hi" in out and "\x1b" not in out and "\x07" not in out and "\x9b" not in out  # log lines are inert too
    assert json.loads(out.strip().splitlines()[-1])["message"] == "json access_token=****"


def test_http_loggers_stay_quiet_unless_debug() -> None:
    from inbox.runtime.logging import configure

    root = logging.getLogger()
    before = root.level
    try:
        configure("DEBUG")
        assert logging.getLogger("urllib3").getEffectiveLevel() > logging.DEBUG
        assert logging.getLogger("tweepy.client").getEffectiveLevel() > logging.DEBUG
        configure("INFO", debug=True)
        assert logging.getLogger("urllib3").getEffectiveLevel() == logging.DEBUG
    finally:
        for h in [h for h in root.handlers if getattr(h, "_inbox_handler", False)]:
            root.removeHandler(h)
        root.setLevel(before)
        for name in ("urllib3", "tweepy.client", "tweepy", "alembic"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_the_reauth_hint_names_the_variables_to_set_and_a_short_token_life() -> None:
    from inbox.accounts import reauth_hint

    x2 = AccountSettings(name="x-care", channel="x", flavour="oauth2", user_id="7", access_token_env="INBOX_X_TOKEN")
    assert reauth_hint(x2) == ("reconnect the account and put its new token in $INBOX_X_TOKEN (X OAuth 2.0 user tokens "
                                "last 2 hours), then `inbox accounts reset x-care`")
    x1 = AccountSettings(name="x-1", channel="x", flavour="oauth1", user_id="7", consumer_key_env="CK", consumer_secret_env="CS",
                         access_token_env="AT", access_token_secret_env="ATS")
    assert "$CK and $CS and $AT and $ATS, then" in reauth_hint(x1) and "hours" not in reauth_hint(x1)
    fb = AccountSettings(name="fb", channel="facebook", page_id="1", access_token_env="FB_T")
    assert reauth_hint(fb) == "reconnect the account and put its new token in $FB_T, then `inbox accounts reset fb`"
