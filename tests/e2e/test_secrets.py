"""Secrets never reach a terminal, a log or a stored payload: tracebacks, OAuth 1.0a debug lines, database
URLs in every password form, raw payloads of every channel; tokens with stray whitespace; https only."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa

import cli
from connectors.redact import redact, register_secret, scrub
from sandbox import Sandbox

# End to end through the CLI's processes: CI runs these, locally INBOX_TEST_SLOW=1 does.
pytestmark = pytest.mark.slow

INBOX = str(Path(sys.executable).parent / "inbox")


def _inbox(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    return subprocess.run([INBOX, *args], capture_output=True, text=True, timeout=120, env={**base, **env},
                          stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """A sandbox served by this process, a config for it (with the OAuth 1.0a X account) and its environment."""
    with Sandbox(seed=7).start() as sb:
        config = tmp_path / "inbox.toml"
        config.write_text(sb.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}", include_x_oauth1=True)
                          + "\n[sync]\nprocesses = false\n", encoding="utf-8")
        yield sb, config, dict(sb.env())


# ── 19: tracebacks and tokens with whitespace ────────────────────────────────────────────────


def test_debug_traceback_is_redacted_and_cleaned_with_its_chained_causes(capsys: pytest.CaptureFixture[str]) -> None:
    token = "EAATraceback0Token0With0Newline0123456789\n"
    register_secret(token)  # what the config does with every secret it resolves

    def boom() -> None:
        try:
            raise ValueError(f"Invalid header value: {'Bearer ' + token!r} \x1b]0;owned\x07\x1b[2J")
        except ValueError as exc:
            raise RuntimeError(f"the call failed for https://graph.facebook.com/me?access_token={token.strip()}") from exc

    cli.app.command("boom-traceback")(boom)
    try:
        assert cli.main(["--debug", "boom-traceback"]) == 1
    finally:
        cli.app.registered_commands.pop()
    err = capsys.readouterr().err
    assert "Traceback" in err and "The above exception was the direct cause" in err  # the whole chain is there
    assert token.strip() not in err and token.strip()[:20] not in err
    assert "\x1b" not in err and "\x07" not in err
    assert "Bearer ****" in err and "access_token=****" in err


def test_token_with_a_trailing_newline_is_stripped_with_a_warning_and_never_printed(served: Any) -> None:
    sb, config, env = served
    token = env["INBOX_SANDBOX_FB_TOKEN"]
    env = {**env, "INBOX_SANDBOX_FB_TOKEN": token + "\n"}  # as `export T="$(cat token-file)"` keeps it with some tools
    res = _inbox("-c", str(config), "config", "check", env=env)
    assert res.returncode == 0, res.stderr
    assert "INBOX_SANDBOX_FB_TOKEN has whitespace around its value" in res.stderr and "stripped" in res.stderr
    res = _inbox("--debug", "-c", str(config), "sync", "--account", "tokoshop-fb", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert token not in res.stdout + res.stderr and "InvalidHeader" not in res.stderr


def test_token_with_whitespace_inside_is_a_config_error(served: Any) -> None:
    sb, config, env = served
    token = env["INBOX_SANDBOX_FB_TOKEN"]
    env = {**env, "INBOX_SANDBOX_FB_TOKEN": token[:20] + " " + token[20:]}  # pasted across a line break
    for args in (["config", "check"], ["sync", "--account", "tokoshop-fb"]):
        res = _inbox("-c", str(config), *args, env=env)
        assert res.returncode != 0 and (res.returncode == 3 or args[0] == "sync"), (args, res.stderr)  # sync's code: see test_cli
        assert "INBOX_SANDBOX_FB_TOKEN has whitespace or control characters inside its value" in res.stderr
        assert token[:20] not in res.stderr and token[20:] not in res.stderr


# ── 20: OAuth 1.0a debug lines ───────────────────────────────────────────────────────────────


def test_debug_sync_with_oauth1_masks_signature_nonce_and_tokens(served: Any) -> None:
    sb, config, env = served
    headers: list[str] = []
    dispatch = sb.dispatch

    def spy(method: str, path: str, query: dict[str, str], hdrs: dict[str, str], body: bytes) -> Any:
        headers.append(hdrs.get("authorization", ""))
        return dispatch(method, path, query, hdrs, body)

    sb.dispatch = spy  # type: ignore[method-assign]
    res = _inbox("--debug", "-c", str(config), "sync", "--account", "tokoshop-x-oauth1", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "oauthlib" in res.stderr and "Signature: ****" in res.stderr  # the debug lines are there, masked
    sent = [dict(re.findall(r'(\w+)="([^"]*)"', h)) for h in headers if h.startswith("OAuth ")]
    assert sent
    for params in sent:
        for name in ("oauth_signature", "oauth_nonce", "oauth_token"):
            value = unquote(params[name])
            for form in {value, params[name], quote(value, safe=""), quote(quote(value, safe=""), safe="")}:
                assert form not in res.stderr, f"{name} leaked as {form!r}"
    for var in ("INBOX_SANDBOX_X_CONSUMER_KEY", "INBOX_SANDBOX_X_CONSUMER_SECRET", "INBOX_SANDBOX_X_ACCESS_TOKEN",
                "INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET"):
        assert env[var] not in res.stderr


# ── 21: database URLs ────────────────────────────────────────────────────────────────────────

PASSWORD_FORMS = [
    "postgresql+psycopg://:pw-NoUser-31@127.0.0.1:9/inbox",
    "postgresql+psycopg://care:pw-User-32@127.0.0.1:9/inbox",
    "postgresql+psycopg://care@127.0.0.1:9/inbox?password=pw-Query-33&sslmode=disable",
    "postgresql+psycopg://care@127.0.0.1:9/inbox?sslmode=disable&PASSWORD=pw-Query-34",
]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_database_password_is_masked_in_every_form(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INBOX_DATABASE_URL", raising=False)
    password = re.search(r"pw-\w+-\d+", url).group()  # type: ignore[union-attr]
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(f"database = {json.dumps(url)}\n", encoding="utf-8")
    for args in (["config", "show"], ["--json", "config", "show"], ["db", "status"], ["--json", "db", "status"], ["list"]):
        code, out = _cli(capsys, "-c", str(cfg), *args)
        assert password not in out, args
        assert "****" in out or code != 0, args


def test_db_status_masks_a_password_the_server_accepted(pg_url: str, tmp_path: Path) -> None:
    """The success path prints the URL too (the test server trusts its client, so any password passes)."""
    url = sa.make_url(pg_url)
    forms = [url.set(password="pw-Served-41").render_as_string(hide_password=False),
             url.update_query_dict({"password": "pw-Served-42"}).render_as_string(hide_password=False)]
    cfg = tmp_path / "inbox.toml"
    cfg.write_text('database = "unused.db"\n', encoding="utf-8")
    for form in forms:
        res = _inbox("-c", str(cfg), "db", "status", env={"INBOX_DATABASE_URL": form})
        assert res.returncode == 0, res.stderr
        assert "database: " in res.stdout and "pw-Served-4" not in res.stdout + res.stderr


def test_redact_masks_passwords_oauth_pairs_and_encoded_links() -> None:
    assert redact("postgresql://:pw1secret@h/d") == "postgresql://:****@h/d"
    assert redact("postgresql://u:p%40ss@h:5432/d?password=x2&sslmode=require") == "postgresql://u:****@h:5432/d?password=****&sslmode=require"
    assert redact("https://h:8080/a@b") == "https://h:8080/a@b"  # a port is not a password
    assert redact('OAuth oauth_nonce="1234567", oauth_signature="ab%2Bc%3D", oauth_signature_method="HMAC-SHA1"') == (
        'OAuth oauth_nonce="****", oauth_signature="****", oauth_signature_method="HMAC-SHA1"')
    assert redact("[('oauth_nonce', '1234567'), ('max_results', '100')]") == "[('oauth_nonce', '****'), ('max_results', '100')]"
    assert redact("GET&u&a%3D1%26oauth_nonce%3D1234567%26oauth_token%3D15-abc%26z%3D1") == "GET&u&a%3D1%26oauth_nonce%3D****%26oauth_token%3D****%26z%3D1"
    assert redact("Signature: fiZYd0uGv50GiNRz=") == "Signature: ****"
    assert redact("the bearer of bad news") == "the bearer of bad news"


# ── 22: raw payloads ─────────────────────────────────────────────────────────────────────────


def test_scrub_masks_token_bodies_bearer_strings_encoded_links_and_the_account_token() -> None:
    own = "c2FuZGJveC1vd24tdG9rZW4tZm9yLXNjcnViOjE3NjQ"
    register_secret(own)
    payload = {
        "access_token": "EAAbodytoken123", "token_type": "bearer",
        "data": [{"text": f"pasted: {own}", "note": "Authorization: Bearer AAAAinsideastring99"},
                 {"link": "https://cdn.example/a?next=https%3A%2F%2Fgraph.facebook.com%2Fv23.0%2F1%3Faccess_token%3DEAAnested99%26after%3DQ"},
                 {"quoted": quote(own, safe="")}],
    }
    out = json.dumps(scrub(payload))
    for secret in ("EAAbodytoken123", own, "AAAAinsideastring99", "EAAnested99", quote(own, safe="")):
        assert secret not in out
    assert "after%3DQ" in out and '"token_type": "bearer"' in out  # the rest of the payload is kept
    clean = {"data": [{"text": "Halo kak, pesanan INV/20261120/MPL/3817265540 belum sampai"}]}
    assert scrub(clean) is clean  # nothing to mask: the same object, no copy


def test_raw_payloads_of_every_channel_are_scrubbed_before_they_are_stored(engine: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inbox.sync.pool import sync_all
    from tests.store.test_sync import fast_factory, sandbox_settings

    with Sandbox(seed=7).start() as sb:
        env = sb.env()
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        x_token, fb_token = env["INBOX_SANDBOX_X_TOKEN"], env["INBOX_SANDBOX_FB_TOKEN"]
        nested = "https://graph.facebook.com/v23.0/1/messages?next=" + quote(f"https://graph.facebook.com/v23.0/2?access_token={fb_token}&after=Q", safe="")
        texts = {
            "tokoshop-x": f"token saya {x_token} ya, Bearer {x_token}, {nested}",
            "tokoshop-fb": f"link {nested} dan {quote(fb_token, safe='')}",
        }
        for account, text in texts.items():
            sb.inject(account, text=text)
        settings = sandbox_settings(sb, db_url, processes=False)
        results = sync_all(engine, settings, accounts=list(texts), connector_factory=fast_factory(settings))
        assert {r.status for r in results} == {"ok"}, [r.error for r in results]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT text, raw FROM message WHERE text LIKE '%v23.0%'")).all()
    assert len(rows) == 2
    for text, raw in rows:
        raw_text = raw if isinstance(raw, str) else json.dumps(raw)
        for secret in (x_token, fb_token, quote(fb_token, safe=""), "access_token%3D" + fb_token[:10]):
            assert secret not in raw_text
        assert "****" in raw_text
        assert text in texts.values()  # the message text itself is what the customer sent, untouched


# ── 27: https only, except loopback ──────────────────────────────────────────────────────────


@pytest.mark.parametrize("base_url,ok", [
    ("https://graph.example.com/v23.0", True),
    ("http://127.0.0.1:8000/facebook/v23.0", True),
    ("http://127.8.9.10/v23.0", True),
    ("http://[::1]:8000/v23.0", True),
    ("http://localhost:8000/v23.0", True),
    ("http://graph.example.com/v23.0", False),
    ("http://10.0.0.8:8000/v23.0", False),
    ("http://localhost.evil.example/v23.0", False),
    ("ftp://graph.example.com/v23.0", False),
    ("graph.example.com/v23.0", False),
])
def test_base_url_must_be_https_unless_loopback(base_url: str, ok: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "inbox.toml"
    cfg.write_text(f'[[accounts]]\nname = "fb"\nchannel = "facebook"\npage_id = "1"\nbase_url = "{base_url}"\n'
                   'access_token_env = "INBOX_T_FB"\n', encoding="utf-8")
    monkeypatch.setenv("INBOX_T_FB", "EAAbaseurltoken1234567890")
    code, out = _cli(capsys, "-c", str(cfg), "config", "check")
    if ok:
        assert code == 0, out
        return
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert code == 3 and len(errors) == 1, out
    assert "accounts[0] (fb).base_url" in errors[0] and "https://" in errors[0]
    code, out = _cli(capsys, "-c", str(cfg), "sync")
    assert code == 3 and "base_url" in out


# ── 24: SQL parameters (customer text) never in error lines or last_error ────────────────────

SECRET_TEXT = "RAHASIA nomor rekening 1234567890 a.n. Budi"


def _refuse_text(engine: Any, table: str) -> None:
    """Make the database itself refuse rows quoting SECRET_TEXT: a real driver error, with real parameters."""
    column = {"message": "text", "ticket_event": "detail"}[table]
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(sa.text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN CAST(NEW.{column} AS TEXT) LIKE '%RAHASIA%' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"))
        else:  # the check's DETAIL line quotes the whole failing row
            conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT refuse_{table} CHECK (CAST({column} AS TEXT) NOT LIKE '%RAHASIA%') NOT VALID"))


def test_sync_error_keeps_the_statement_kind_and_drops_its_parameters(engine: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inbox.accounts import health
    from inbox.sync.pool import sync_all
    from tests.store.test_sync import fast_factory, sandbox_settings

    with Sandbox(seed=7).start() as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        settings = sandbox_settings(sb, db_url, processes=False)
        _refuse_text(engine, "message")
        sb.inject("tokoshop-x", text=SECRET_TEXT)
        [res] = sync_all(engine, settings, accounts=["tokoshop-x"], connector_factory=fast_factory(settings))
    assert res.status == "failed"
    assert "RAHASIA" not in res.error and "1234567890" not in res.error
    if engine.dialect.name == "postgresql":  # SQLite's ingest writes through the driver: its error names no statement
        assert "database error in INSERT INTO message" in res.error
    [h] = [h for h in health(engine, settings) if h.name == "tokoshop-x"]
    assert h.last_error == res.error


def test_cli_error_line_keeps_the_statement_kind_and_drops_its_parameters(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import factories as sf
    from inbox.store import open_store

    engine = open_store(db_url)
    tid = sf.ticket(engine).ticket_id
    _refuse_text(engine, "ticket_event")
    engine.dispose()
    cfg = tmp_path / "inbox.toml"
    cfg.write_text('database = "unused.db"\n', encoding="utf-8")
    monkeypatch.setenv("INBOX_DATABASE_URL", db_url)
    assert cli.main(["-c", str(cfg), "note", str(tid), SECRET_TEXT, "--agent", "sari"]) == 1
    err = capsys.readouterr().err
    assert "RAHASIA" not in err and "1234567890" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
    if db_url.startswith("postgresql"):  # SQLite's errors are explained by the file (see test_cli_basics)
        assert "database error in INSERT INTO ticket_event" in err, err


# ── 26: files holding conversations are created 0600 ─────────────────────────────────────────


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def umask_022() -> Any:
    """The common default umask, under which a file created 0644 would be readable by every user."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_store_and_its_wal_and_shm_are_created_owner_only(tmp_path: Path, umask_022: None) -> None:
    from inbox.store import open_store

    db = tmp_path / "inbox.db"
    engine = open_store(f"sqlite:///{db}")  # first use creates and migrates it
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists() and _mode(path) == 0o600, (path, oct(_mode(path)))
    finally:
        engine.dispose()
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)  # a team's decision to share a file stands
    open_store(f"sqlite:///{shared}").dispose()
    assert _mode(shared) == 0o640


def test_cli_creates_the_store_export_files_and_demo_owner_only(tmp_path: Path, umask_022: None) -> None:
    cfg = tmp_path / "inbox.toml"
    cfg.write_text('database = "inbox.db"\n', encoding="utf-8")
    res = _inbox("-c", str(cfg), "list", env={})
    assert res.returncode == 0, res.stderr
    assert _mode(tmp_path / "inbox.db") == 0o600
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"tickets.{fmt}"
        res = _inbox("-c", str(cfg), "export", "--format", fmt, "--output", str(out), env={})
        assert res.returncode == 0, res.stderr
        assert _mode(out) == 0o600
    res = _inbox("demo", "--db", str(tmp_path / "demo" / "demo.db"), env={}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _mode(tmp_path / "demo" / "demo.db") == 0o600


# ── 27: --debug under every failure a platform can answer ────────────────────────────────────

DEAD_ACCOUNTS = """
[[accounts]]
name = "dead-fb"
channel = "facebook"
page_id = "111"
access_token_env = "INBOX_SANDBOX_FB_TOKEN"
base_url = "http://127.0.0.1:9/v23.0"

[[accounts]]
name = "dead-x"
channel = "x"
user_id = "222"
access_token_env = "INBOX_SANDBOX_X_TOKEN"
base_url = "http://127.0.0.1:9/2"
"""


def test_debug_never_shows_or_stores_a_token_whatever_the_platform_answers(tmp_path: Path) -> None:
    """Connection refused (the URL carries access_token), 500, expired tokens, error bodies quoting the
    token as is and URL-encoded, an item whose id is the token, a hostile rate header, failed replies:
    with --debug, no form of any token in any output, in the database's rows (last errors, reply
    errors, quarantine) or in its files."""
    with Sandbox(seed=7).start() as sb:
        db = tmp_path / "inbox.db"
        config = tmp_path / "inbox.toml"
        config.write_text(sb.config_toml(database=f"sqlite:///{db}") + DEAD_ACCOUNTS + "\n[sync]\nprocesses = false\n",
                          encoding="utf-8")
        env = dict(sb.env())
        fb, x = env["INBOX_SANDBOX_FB_TOKEN"], env["INBOX_SANDBOX_X_TOKEN"]
        outputs: list[tuple[tuple[str, ...], str]] = []

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            res = _inbox("--debug", "-c", str(config), *args, env={**env, "NO_COLOR": "1"}, cwd=tmp_path)
            outputs.append((args, res.stdout + res.stderr))
            return res

        assert run("sync").returncode == 7  # the dead accounts: connection refused
        graph_body = json.dumps({"error": {"message": f"Invalid OAuth access token {fb} (https://graph.facebook.com/v23.0/me?"
                                           f"access_token={quote(fb, safe='')})", "type": "OAuthException", "code": 190,
                                           "fbtrace_id": fb}})
        x_body = json.dumps({"title": "Unauthorized", "detail": f"Bearer {x} rejected (token {quote(x, safe='')})", "status": 401})
        sb.fault("500", account="tokoshop-fb", count=9)
        sb.fault("expired_token", account="tokoshop-ig")
        sb.fault("answer", account="tokoshop-x", status=401, body=x_body, content_type="application/json")
        run("sync", "--account", "tokoshop-fb")
        run("sync", "--account", "tokoshop-ig")
        run("sync", "--account", "tokoshop-x", "--json")
        sb.clear_faults()
        sb.fault("answer", account="tokoshop-fb", status=400, body=graph_body, content_type="application/json", count=5)
        sb.fault("answer", account="tokoshop-x", status=500, body=f"<html>{x} {fb}</html>", content_type="text/html", count=5)
        run("sync", "--account", "tokoshop-fb", "--json")
        run("sync", "--account", "tokoshop-x")
        sb.clear_faults()
        for name in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"):
            assert run("accounts", "reset", name).returncode == 0
        for name in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"):
            sb.inject(name, text=f"halo kak, tolong cek {name}")
        sb.fault("poison", account="tokoshop-x", field="id", value=json.dumps(x))  # not numeric: quarantined
        sb.fault("header", account="tokoshop-x", name="x-rate-limit-reset", value=x)
        sb.fault("header", account="tokoshop-fb", name="X-Business-Use-Case-Usage", value=json.dumps({fb: fb}))
        run("sync", "--account", "tokoshop-fb")
        run("sync", "--account", "tokoshop-x")
        sb.clear_faults()
        sb.inject("tokoshop-x", text="halo kak, tolong cek tokoshop-x")  # the first one was the poisoned event
        for name in ("tokoshop-ig", "tokoshop-x"):
            assert run("sync", "--account", name).returncode == 0
        tickets = json.loads(run("list", "--json", "--status", "all", "--limit", "500").stdout)["tickets"]
        for name in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"):
            ticket = str(next(t["id"] for t in tickets if t["snippet"] == f"halo kak, tolong cek {name}"))
            sb.fault("answer", path="messages", method="POST", status=400, body=x_body if name == "tokoshop-x" else graph_body,
                     content_type="application/json")
            assert run("reply", ticket, "Halo kak, kami cek dulu ya", "--yes").returncode in (4, 7)
            sb.fault("500", path="messages", method="POST")
            assert run("reply", ticket, "Halo kak, sebentar ya", "--yes").returncode == 7
            sb.clear_faults()
        quarantined = json.loads(run("quarantine", "--all", "--json").stdout)["quarantined"]
        assert quarantined, "the poisoned X event was not quarantined"
        for item in quarantined:
            run("quarantine", "show", str(item["id"]))
            run("quarantine", "show", str(item["id"]), "--json")
        for args in (("accounts",), ("accounts", "--json"), ("quarantine", "--all"), ("outbox", "--all"), ("outbox", "--all", "--json"),
                     ("config", "show"), ("export",)):
            run(*args)
        with sqlite3.connect(db) as conn:
            rows = [repr(row) for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                    for row in conn.execute(f'SELECT * FROM "{table}"')]
        files = b"".join(p.read_bytes() for p in tmp_path.glob("inbox.db*"))
    secrets = [v for k, v in env.items() if any(w in k for w in ("TOKEN", "SECRET", "KEY"))]
    # Whole, URL-encoded, and its middle (a cut-off one; an X access token starts with the public user id).
    forms = {form for s in secrets for form in (s, quote(s, safe=""), s[len(s) // 4:-len(s) // 4])}
    for args, text in outputs:
        assert "****" in text or not any(w in text for w in ("access_token", "Bearer")), args
        for form in forms:
            assert form not in text, f"inbox --debug {' '.join(args)} showed {form[:8]}…"
    for form in forms:
        assert not any(form in row for row in rows), f"{form[:8]}… stored in {[r[:200] for r in rows if form in r]}"
        assert form.encode() not in files, f"{form[:8]}… in the database's files"
