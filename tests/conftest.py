"""Shared fixtures. Store tests run on SQLite and, when INBOX_TEST_PG_URL is set, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from hypothesis import HealthCheck, settings

PG_URL = os.environ.get("INBOX_TEST_PG_URL")  # e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test
IN_CI = os.environ.get("CI") == "true"
# Slow end-to-end tests (`@pytest.mark.slow`) run in CI; locally only with INBOX_TEST_SLOW=1 or an explicit -m.
RUN_SLOW = IN_CI or os.environ.get("INBOX_TEST_SLOW") == "1"


def pytest_configure(config: pytest.Config) -> None:
    if not RUN_SLOW and not config.option.markexpr:
        config.option.markexpr = "not slow"
    # A suite started in the background of a script (`./run test &`, nohup) inherits SIGINT
    # ignored, and so would every command a test starts: its Ctrl-C tests would wait forever.
    # A handler (not "ignored") is what children get back as the default at exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.option.markexpr == "not slow" and not RUN_SLOW:
        return "quick profile: slow tests deselected (INBOX_TEST_SLOW=1, or CI=true, runs them)"
    return None


# Property and stateful tests: a short profile locally, a long one in CI. No deadline: a loaded
# machine must not turn a slow example into a failure. The database keeps failing examples, so a
# failure found once is replayed first next time (and printed with its seed).
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci", max_examples=200, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("INBOX_HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a PostgreSQL test that skipped (whoever skipped it) is a failure: both backends must run."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).lower()
        if "postgres" in reason or "inbox_test_pg_url" in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where PostgreSQL tests must run: {report.longrepr[2]}"


@pytest.fixture(autouse=True, scope="session")
def _no_in_list_in_executemany() -> Iterator[None]:
    """Every statement run with a list of parameter sets, anywhere in the suite, holds no IN list.

    SQLAlchemy refuses an expanding parameter in an executemany only from the second parameter
    set on, so code tested with one pending row (one reply, one ticket, one account's page) passes
    and breaks in production with two. Checked here on every call, whatever the number of rows.
    """
    from sqlalchemy.engine import Connection

    from inbox.store.fastpath import expanding_params

    original = Connection.execute

    def execute(self, statement, parameters=None, *, execution_options=None):  # type: ignore[no-untyped-def]
        if isinstance(parameters, list) and (found := expanding_params(statement)):
            raise AssertionError(f"executemany of a statement with IN-list parameters {found}: fails with two rows\n{statement}")
        return original(self, statement, parameters, execution_options=execution_options)

    Connection.execute = execute  # type: ignore[method-assign]
    try:
        yield
    finally:
        Connection.execute = original  # type: ignore[method-assign]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("INBOX_TEST_PG_URL is not set in CI: PostgreSQL tests must run")
        pytest.skip("PostgreSQL not configured: set INBOX_TEST_PG_URL to run the PostgreSQL variant")
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1) if PG_URL.startswith("postgresql://") else PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # server down
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL at INBOX_TEST_PG_URL is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc.__class__.__name__}")
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Each store test runs once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    from inbox.store import open_store

    eng = open_store(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):  # type: ignore[no-untyped-def]
    from inbox.store import open_store

    eng = open_store(f"sqlite:///{tmp_path / 'inbox.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A seeded sandbox on 127.0.0.1 for one test, with its token env vars set."""
    from sandbox import Sandbox

    with Sandbox(seed=7).start() as sb:
        for key, value in sb.env().items():
            monkeypatch.setenv(key, value)
        yield sb
