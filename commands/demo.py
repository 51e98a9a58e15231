"""`inbox demo`: the whole loop against the in-process sandbox, in a few seconds, no credentials.

Starts the sandbox on loopback, writes a config pointing at it (tokens through environment
variables, as in production), syncs the three accounts into a fresh SQLite store, claims a ticket
whose reply window is open, replies to it through the sandbox's Send API, syncs again and finds
the reply coming back as an echo matched to the Reply. `Demo` only runs the steps and hands back
what happened; `demo_cmd` prints them. `inbox sandbox serve` runs the sandbox in the foreground.
This module is the only importer of sandbox/.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from commands import console, emit, prog, say, state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import Settings
    from inbox.replies.outbox import SendOutcome
    from inbox.replies.route import ReplyPlan
    from inbox.tickets.detail import ThreadMessage
    from inbox.tickets.queue import TicketRow


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
            import tempfile  # here, not at the top: every command imports this module to register it

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
            import shutil

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
        from inbox.tickets import queue
        from inbox.errors import PolicyError

        assert self.engine is not None
        for row in queue.list_tickets(self.engine, queue.TicketFilter(statuses=queue.CLAIMABLE_STATUSES, assignee="none", limit=200)):
            try:
                plan = self.plan(row.id)
            except PolicyError:
                continue  # e.g. Meta's window closed: the demo shows a reply that can go out
            return queue.claim(self.engine, row.id, AGENT), plan
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
        from inbox.tickets.detail import show_ticket

        assert self.engine is not None
        for m in show_ticket(self.engine, ticket_id).messages:
            if m.direction == "out" and m.reply_id == reply_id:
                return m
        return None


# ─── the commands: inbox demo, inbox sandbox serve ───────────────────────────────────────────

sandbox_app = typer.Typer(help="A loopback emulator of the Graph (Messenger, Instagram) and X DM APIs.", no_args_is_help=True)


@sandbox_app.command("serve")
def sandbox_serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind: loopback only (127.0.0.1 or localhost)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", min=0, max=65535, help="Port (0 picks a free one)."),
    large: int = typer.Option(0, "--large", metavar="N", min=0, help="Add a generated dataset of about N messages."),
    seed: int = typer.Option(7, "--seed", metavar="N", help="Seed for ids, timings and the generated dataset."),
    write_config: str = typer.Option("./inbox-sandbox.toml", "--write-config", metavar="PATH", help="Where to write an inbox config pointing at the sandbox."),
    database: str = typer.Option("sqlite:///inbox-sandbox.db", "--database", metavar="URL", help="Database URL written into that config."),
    ig_login: bool = typer.Option(False, "--ig-login", help="Also configure the Instagram-Login account."),
    webhooks: Optional[str] = typer.Option(None, "--webhooks", metavar="URL",
                                           help="Send a signed webhook of every new message to URL (an `inbox serve`, e.g. http://127.0.0.1:8080)."),
) -> None:
    """Serve the sandbox in the foreground until Ctrl-C; write a config that points at it."""
    import shlex
    import threading
    from pathlib import Path

    from sandbox import Sandbox

    if host not in ("127.0.0.1", "localhost"):
        raise typer.BadParameter("the sandbox binds to 127.0.0.1 only", param_hint="--host")
    sb = Sandbox(seed=seed, large=large)
    try:
        sb.start(host, port)
    except OSError as exc:
        from inbox.errors import UsageError

        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        config_path = Path(write_config).expanduser()
        config_path.write_text(sb.config_toml(database=database, include_ig_login=ig_login, webhooks=webhooks is not None), encoding="utf-8")
        if webhooks is not None:
            sb.webhooks(webhooks)  # signed with the keys the written config names
        env = sb.env()

        def render() -> None:
            # These are the sandbox's fixed, public test tokens, not real secrets.
            out = sys.stdout
            out.write(f"sandbox serving on {sb.base_url}\n")
            for name, acc in sb.accounts.items():
                out.write(f"  {name:<20} {acc.base_url}\n")
            say(f"config written to {config_path}\n\npaste these lines into your shell (the config and the sandbox's test tokens), then run e.g. `{prog()} sync`:\n")
            for key, value in {"INBOX_CONFIG": str(config_path.resolve()), **env}.items():
                out.write(f"export {key}={shlex.quote(value)}\n")
            out.write("\nCtrl-C stops the sandbox.\n")
            out.flush()

        emit(ctx, {"base_url": sb.base_url, "config": str(config_path.resolve()), "env": {"INBOX_CONFIG": str(config_path.resolve()), **env},
                   "accounts": {name: acc.base_url for name, acc in sb.accounts.items()}}, render)
        # Woken twice a second: Ctrl-C is handled in this thread, and a signal the kernel gave
        # to a server thread is only seen when this one runs again.
        stop = threading.Event()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        sys.stderr.write("sandbox stopped\n")
    finally:
        sb.stop()


def demo_cmd(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, "--db", metavar="PATH", help="Use this new SQLite file (kept) instead of a temporary one."),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary store and config to explore afterwards."),
) -> None:
    """The whole loop in a few seconds against a local sandbox of the three APIs: sync, triage, claim, reply, echo."""
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn
    from rich.rule import Rule
    from rich.text import Text

    from commands.render.queue import ticket_table
    from inbox.safe_text import one_line

    import logging

    out = console()
    started = time.perf_counter()
    if not state(ctx).debug:
        # The seeded sandbox includes a thread past Meta's 20-message horizon on purpose; its
        # warning belongs in `inbox sync` output, not in the middle of the demo's progress bars.
        logging.getLogger("connectors").setLevel(logging.ERROR)
    demo = Demo.create(db, keep)
    with demo:
        out.print(Text("inbox demo — the whole loop against a local sandbox of the Instagram, Messenger and X APIs", style="bold"))
        out.print(Text(f"sandbox {demo.sandbox.base_url} · config {demo.config_path} · store {demo.db_path}", style="dim"))

        out.print(Rule("1. sync the three accounts", style="cyan", align="left"))
        with Progress(SpinnerColumn(), TextColumn("{task.description:<12}"), TextColumn("{task.fields[info]}"), console=out, transient=False) as bar:
            tasks = {a.name: bar.add_task(a.name, total=None, info="…") for a in demo.settings.accounts}

            def on_progress(p: Any) -> None:
                c = p.counts
                info = f"{p.pages} page(s), {c.new_messages} messages, {c.new_tickets} tickets" + (f" · {p.status}" if p.done else "")
                bar.update(tasks[p.account], info=info, total=1 if p.done else None, completed=1 if p.done else 0)

            results = demo.sync(on_progress)
        failed = [r for r in results if r.status != "ok"]
        if failed:
            raise RuntimeError("demo sync failed: " + "; ".join(f"{r.account}: {r.error}" for r in failed))

        out.print(Rule("2. the inbox  (inbox list)", style="cyan", align="left"))
        from inbox.tickets.queue import TicketFilter, list_tickets

        rows = list_tickets(demo.engine, TicketFilter(limit=10))
        out.print(ticket_table(rows, width=out.width), no_wrap=True, overflow="ellipsis")

        out.print(Rule("3. claim a ticket  (inbox claim)", style="cyan", align="left"))
        ticket, plan = demo.pick_and_claim()
        out.print(Text(f"#{ticket.id} claimed by {ticket.assignee} · {ticket.priority} · {ticket.channel} · {one_line(ticket.snippet, 70)}"))

        out.print(Rule(f"4. reply through {plan.route.channel}  (inbox reply {ticket.id} ...)", style="cyan", align="left"))
        out.print(Text(plan.describe(), style="bold"))
        out.print(Text(one_line(plan.text, 200)))
        outcome = demo.send(plan)
        out.print(Text(f"sent: reply #{outcome.reply_id}, platform id {one_line(outcome.external_id, 28)}", style="green"))

        out.print(Rule("5. sync again: the reply comes back as an echo", style="cyan", align="left"))
        demo.sync()
        echo = demo.echo_of(ticket.id, outcome.reply_id)
        if echo is None:
            raise RuntimeError(f"the echo of reply #{outcome.reply_id} did not arrive")
        from inbox.timefmt import local_time, resolve_zone

        out.print(Text(f"echo {one_line(echo.external_id, 28)} at {local_time(echo.sent_at, resolve_zone(demo.settings.timezone), '%H:%M:%S')} is matched to reply #{outcome.reply_id}; "
                       f"ticket #{ticket.id} is now pending", style="green"))

        out.print(Rule("6. real time: a message arrives by webhook  (inbox serve)", style="cyan", align="left"))
        mid, arrived_ticket, seconds = demo.webhook_arrival()
        out.print(Text(f"signed webhook → stored {one_line(mid, 28)} on ticket #{arrived_ticket} {seconds * 1000:.0f} ms after "
                       "the customer sent it; polling stays on to find what a webhook misses", style="green"))

        out.print(Rule("next", style="cyan", align="left"))
        elapsed = time.perf_counter() - started
        import shlex

        inbox_cmd = prog()
        cfg = shlex.quote(str(demo.config_path))
        if demo.keep:
            out.print(Text("The store and config are kept. These work now (the sandbox has stopped, so sync and reply need it running):"))
            for cmd in (f"{inbox_cmd} -c {cfg} list", f"{inbox_cmd} -c {cfg} show {ticket.id}", f"{inbox_cmd} -c {cfg} search refund",
                        f"{inbox_cmd} -c {cfg} list --channel instagram --window-closing 24", f"{inbox_cmd} -c {cfg} stats",
                        f"{inbox_cmd} -c {cfg} export --format csv --output tickets.csv"):
                out.print(Text("  " + cmd), soft_wrap=True)
        else:
            out.print(Text(f"The demo store was temporary; `{inbox_cmd} demo --keep` keeps it to explore with list/show/search/stats."))
        out.print(Text("To keep syncing and replying against the sandbox, serve it in another terminal:"))
        out.print(Text(f"  {inbox_cmd} sandbox serve"), soft_wrap=True)
        out.print(Text("  then paste the export lines it prints (its config and tokens), and:"))
        for cmd in (f"{inbox_cmd} sync", f"{inbox_cmd} list", f"{inbox_cmd} claim", f"{inbox_cmd} reply ID \"Halo kak ...\""):
            out.print(Text("  " + cmd), soft_wrap=True)
        out.print(Text(f"done in {elapsed:.1f} s", style="dim"))

