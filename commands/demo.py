"""`inbox demo`: the whole loop against the in-process sandbox, in a few seconds, no credentials.

Starts the sandbox on loopback, writes a config pointing at it (tokens through environment
variables, as in production), syncs the three accounts into a fresh SQLite store, claims a ticket
whose reply window is open, replies to it through the sandbox's Send API, syncs again and finds
the reply coming back as an echo matched to the Reply. The CLI does the printing; this module
only runs the steps and hands back what happened.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import Settings
    from inbox.replies.outbox import SendOutcome
    from inbox.replies.route import ReplyPlan
    from inbox.tickets.operations import ThreadMessage, TicketRow

log = logging.getLogger(__name__)

AGENT = "demo-agent"

REPLY_TEMPLATE = "Halo {customer}, terima kasih sudah menghubungi TokoShop. Kami cek dulu ya, mohon ditunggu 🙏 — {agent}"


def _free_config_path(db_path: Path) -> Path:
    """Where the demo's config goes beside its database: `<name>.toml`, or `<name>-demo.toml` when
    that is taken (`--db inbox.db` must not replace the user's ./inbox.toml)."""
    for candidate in (db_path.with_suffix(".toml"), db_path.with_name(db_path.stem + "-demo.toml")):
        if not candidate.exists():
            return candidate
    from inbox.errors import UsageError

    raise UsageError(f"{db_path.with_suffix('.toml')} and {db_path.with_name(db_path.stem + '-demo.toml')} already exist; "
                     "the demo never overwrites a file: pass another --db")


@dataclass
class Demo:
    """One demo run: the sandbox, the files it wrote, and the store."""

    directory: Path
    db_path: Path
    config_path: Path
    keep: bool
    sandbox: Any = None
    settings: Settings | None = None
    engine: Engine | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def create(cls, db: str | None = None, keep: bool = False) -> Demo:
        if db:
            db_path = Path(db).expanduser().resolve()
            if db_path.exists():
                from inbox.errors import UsageError

                raise UsageError(f"{db_path} already exists; the demo needs a fresh database file")
            db_path.parent.mkdir(parents=True, exist_ok=True)
            directory = db_path.parent
            config_path = _free_config_path(db_path)
            keep = True
        else:
            directory = Path(tempfile.mkdtemp(prefix="inbox-demo-"))
            db_path = directory / "inbox.db"
            config_path = directory / "inbox.toml"
        return cls(directory, db_path, config_path, keep)

    # ── lifecycle ──────────────────────────────────────────────────────────────────────────
    def start(self) -> None:
        from inbox.settings import load_settings
        from inbox.store import open_store
        from sandbox import Sandbox

        self.sandbox = Sandbox(seed=7).start()
        try:
            # "x": a file that appeared since create() is the user's, never overwritten.
            with open(self.config_path, "x", encoding="utf-8") as fh:
                fh.write(self.sandbox.config_toml(database=f"sqlite:///{self.db_path}", webhooks=True))
        except FileExistsError:
            from inbox.errors import UsageError

            self.sandbox.stop()
            raise UsageError(f"{self.config_path} already exists; the demo never overwrites a file") from None
        # The config names its tokens by environment variable, as a production config does.
        for key, value in self.sandbox.env().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self.settings = load_settings(self.config_path)
        self.engine = open_store(self.settings.database_url())

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.sandbox is not None:
            self.sandbox.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ── steps ──────────────────────────────────────────────────────────────────────────────
    def connector(self, account_name: str) -> Connector:
        """A connector for a sandbox account, built as `inbox sync` builds it. The sandbox enforces
        no per-second limit, so the client-side pacing that protects real Meta accounts (2 calls/s)
        is switched off."""
        from inbox.sync.account import make_connector

        assert self.settings is not None
        return make_connector(self.settings, self.settings.account(account_name), min_interval=0.0)

    def sync(self, progress: Callable[[Any], None] | None = None) -> list[Any]:
        from inbox.sync.pool import sync_all

        assert self.engine is not None and self.settings is not None
        # Each account's connector is made, and closed, by its sync.
        return sync_all(self.engine, self.settings, progress=progress, connector_factory=lambda acc: self.connector(acc.name))

    def pick_and_claim(self) -> tuple[TicketRow, ReplyPlan]:
        """The best unassigned ticket a reply can reach right now (policy allows it), claimed,
        with the reply planned for it."""
        from inbox.tickets import operations as tk
        from inbox.errors import PolicyError

        assert self.engine is not None
        for row in tk.list_tickets(self.engine, tk.TicketFilter(statuses=tk.CLAIMABLE_STATUSES, assignee="none", limit=200)):
            try:
                plan = self.plan(row.id)
            except PolicyError:
                continue  # e.g. Meta's window closed: the demo shows a reply that can go out
            return tk.claim(self.engine, row.id, AGENT), plan
        raise RuntimeError("the sandbox has no ticket a reply can reach")

    def plan(self, ticket_id: int) -> ReplyPlan:
        from inbox.replies import route
        from inbox.replies import templates

        assert self.engine is not None and self.settings is not None
        variables = templates.ticket_variables(self.engine, ticket_id, AGENT, list(self.settings.dedup.order_patterns))
        if not variables["customer"]:
            variables["customer"] = "kak"
        text = templates.render(REPLY_TEMPLATE, variables)
        return route.plan_reply(self.engine, ticket_id, text, human_agent_tag=self.settings.replies.human_agent_tag)

    def send(self, plan: ReplyPlan) -> SendOutcome:
        from inbox.replies import outbox

        assert self.engine is not None
        return outbox.send_reply(self.engine, plan, self.connector, AGENT)

    def webhook_arrival(self, account_name: str = "tokoshop-ig") -> tuple[str, int | None, float]:
        """`inbox serve` in this process, the sandbox sending it signed webhooks, and one new customer
        message: (its platform id, its ticket, seconds from its creation to being stored)."""
        import time

        import sqlalchemy as sa

        from inbox.intake import receiver
        from inbox.intake import server
        from inbox.store.tables import message

        assert self.engine is not None and self.settings is not None
        secrets = receiver.resolve_secrets(self.settings)
        with server.InThread(self.engine, self.settings, secrets) as base:
            self.sandbox.webhooks(base, meta_secret=secrets.meta_app_secret or "", x_secret=secrets.x_consumer_secret or "")
            try:
                started = time.perf_counter()
                mid = self.sandbox.inject(account_name, text="Halo kak, barusan saya transfer, tolong dicek ya 🙏")
                query = sa.select(message.c.ticket_id).where(message.c.external_id == mid)
                deadline = started + 30
                while time.perf_counter() < deadline:
                    with self.engine.connect() as conn:
                        row = conn.execute(query).first()
                    if row is not None:
                        return mid, row.ticket_id, time.perf_counter() - started
                    time.sleep(0.005)
                raise RuntimeError("the webhook's message did not arrive within 30 s")
            finally:
                self.sandbox.stop_webhooks()

    def echo_of(self, ticket_id: int, reply_id: int) -> ThreadMessage | None:
        from inbox.tickets.operations import show_ticket

        assert self.engine is not None
        for m in show_ticket(self.engine, ticket_id).messages:
            if m.direction == "out" and m.reply_id == reply_id:
                return m
        return None

