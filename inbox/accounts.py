"""Account rows from the settings, their health, and clearing a re-auth stop.

Accounts are configured in the TOML file; the store keeps one `Account` row per platform account
(channel + platform id; the configured name is its label, so a rename keeps its history) with its
sync health: last sync, last success, last error (redacted), needs re-auth, rate headroom and a
pause until the platform's reset. A name re-pointed at another platform id is refused until
`repoint` starts it afresh.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import RateInfo
from connectors.redact import redact
from inbox.store.engine import write_tx
from inbox.store.fastpath import upsert
from inbox.errors import ConfigError
from inbox.vocab import AccountRef
from inbox.leases import Holder
from inbox.usage import billed_per_read, cost, reads_on
from inbox.settings import interval_for
from inbox.store.models import Account, Quarantine, SyncGap, SyncState
from inbox.store.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from connectors.base import Connector
    from inbox.settings import AccountSettings, Settings

_a = Account.__table__
_gap = SyncGap.__table__
_q = Quarantine.__table__
_ss = SyncState.__table__

MAX_ERROR_CHARS = 500


def ensure_accounts(engine: Engine, accounts: list[AccountSettings]) -> dict[str, AccountRef]:
    """Upsert an Account row per configured account; name -> AccountRef.

    The stored account is the platform account (channel + platform id): its name is only a label,
    so a renamed account keeps its history. A name that now gives another platform id is refused
    (`ConfigError`): its cursor and tickets belong to the old platform account, and reusing them
    would mix two accounts. `repoint` starts the name afresh on purpose.
    """
    out: dict[str, AccountRef] = {}
    if not accounts:
        return out
    first_name: dict[tuple[str, str], str] = {}
    for acc in accounts:  # one platform account has one name: which would the stored row carry?
        other = first_name.setdefault((acc.channel.value, acc.platform_id), acc.name)
        if other != acc.name:
            raise ConfigError(
                f"accounts '{other}' and '{acc.name}' are both {_platform_account(acc.channel.value, acc.platform_id)}",
                hint="give each platform account one [[accounts]] entry (two entries still sync one at a time, with --account NAME)",
            )
    cols = (_a.c.id, _a.c.name, _a.c.channel, _a.c.platform_id)
    with write_tx(engine) as conn:
        rows = conn.execute(sa.select(*cols)).all()
        by_name = {r.name: r for r in rows}
        by_platform = {(r.channel, r.platform_id): r for r in rows}
        configured = {(a.channel.value, a.platform_id) for a in accounts}
        for acc in accounts:
            named = by_name.get(acc.name)
            if named is not None and (named.channel, named.platform_id) not in configured:
                raise repointed_error(acc, named)
        # Renames (names swapped between accounts included): through names no config can hold.
        renames = [(row, acc.name) for acc in accounts if (row := by_platform.get((acc.channel.value, acc.platform_id))) and row.name != acc.name]
        for row, _name in renames:
            conn.execute(sa.update(_a).where(_a.c.id == row.id).values(name=f"~{row.id}"))
        for row, name in renames:
            conn.execute(sa.update(_a).where(_a.c.id == row.id).values(name=name))
        for acc in accounts:
            channel, pid = acc.channel.value, acc.platform_id
            row = by_platform.get((channel, pid))
            if row is None:
                # Another worker may be creating it right now: let the unique keys decide.
                conn.execute(
                    upsert(conn, _a)
                    .values(name=acc.name, channel=channel, platform_id=pid, created_at=utcnow(), needs_reauth=False)
                    .on_conflict_do_nothing()
                )
                row = conn.execute(sa.select(*cols).where(_a.c.channel == channel, _a.c.platform_id == pid)).first()
                if row is None or row.name != acc.name:  # the name went to another platform account meanwhile
                    raise repointed_error(acc, conn.execute(sa.select(*cols).where(_a.c.name == acc.name)).one())
            out[acc.name] = AccountRef(row.id, acc.name, channel, pid)
    return out


def _platform_account(channel: str, platform_id: str) -> str:
    """`Facebook page 104920378912345`: how the platform names the account."""
    kind = {"facebook": "Facebook page", "instagram": "Instagram account", "x": "X user"}.get(channel, channel)
    return f"{kind} {platform_id}"


def repointed_error(acc: AccountSettings, stored: Any) -> ConfigError:
    old = _platform_account(stored.channel, stored.platform_id)
    new = _platform_account(acc.channel.value, acc.platform_id)
    return ConfigError(
        f"account '{acc.name}' is stored as {old} (its cursor and tickets), but the config now gives {new}; "
        "syncing would mix two accounts",
        hint=f"give {new} a new name, or run `inbox accounts repoint {acc.name}` to start '{acc.name}' afresh on it "
        f"({old}'s history stays, as '{retired_name(acc.name, stored.platform_id)}')",
    )


def retired_name(name: str, platform_id: str) -> str:
    """The name a re-pointed account's old platform account keeps: no config can use it ('~')."""
    return f"{name}~{platform_id}"[:100]


@dataclass(frozen=True, slots=True)
class Repointed:
    ref: AccountRef
    retired: str | None  # the old platform account's name now; None: the name already named this one


def repoint(engine: Engine, settings: Settings, name: str) -> Repointed:
    """Start account `name` afresh on the platform id in the config.

    The platform account the name used to give keeps its cursor, tickets and messages under
    `retired_name` (listed by `inbox list --account`, no longer synced). If the configured platform
    account was stored before under another name, it continues its own history under this one.
    """
    acc = settings.account(name)
    retired = None
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(_a.c.id, _a.c.channel, _a.c.platform_id).where(_a.c.name == name)).first()
        if row is not None and (row.channel, row.platform_id) != (acc.channel.value, acc.platform_id):
            retired = retired_name(name, row.platform_id)
            if conn.execute(sa.select(_a.c.id).where(_a.c.name == retired)).first() is not None:
                retired = f"{name}~{row.id}"[:100]
            conn.execute(sa.update(_a).where(_a.c.id == row.id).values(name=retired))
    return Repointed(ensure_account(engine, acc), retired)


def ensure_account(engine: Engine, account: AccountSettings) -> AccountRef:
    return ensure_accounts(engine, [account])[account.name]


def connector_for(settings: Settings, account: AccountSettings, **spec_overrides: Any) -> Connector:
    """The account's connector: its spec from the settings (secrets from the environment), with
    `spec_overrides` in place of the spec's own fields. The one place connectors are made."""
    from dataclasses import replace

    from connectors import connect

    return connect(replace(settings.spec_for(account), **spec_overrides))


# ── health writes ─────────────────────────────────────────────────────────────────────────────


def reauth_hint(acc: AccountSettings) -> str:
    """What to do for an account whose token the platform refused: which variables to set, and how
    long such a token lives where that is short."""
    from connectors.channels import channel_info

    names = [str(getattr(acc, key)) for key in acc.secret_env_keys() if getattr(acc, key, None)]
    life = channel_info(acc.channel).flavour(acc.resolved_flavour).token_life
    where = " and ".join(f"${n}" for n in names) or "its token variables"
    return f"reconnect the account and put its new token in {where}" + (f" ({life})" if life else "") + f", then `inbox accounts reset {acc.name}`"


def _rate_values(rate: RateInfo | None) -> dict[str, Any]:
    if rate is None:
        return {}
    return {
        "rate_limit": rate.limit,
        "rate_remaining": rate.remaining,
        "rate_reset_at": rate.reset_at,
        "rate_usage_pct": rate.usage_pct,
    }


def record_start(engine: Engine, account_id: int, at: datetime) -> None:
    with write_tx(engine) as conn:
        conn.execute(sa.update(_a).where(_a.c.id == account_id).values(last_sync_at=at))


def record_success(engine: Engine, account_id: int, *, at: datetime, rate: RateInfo | None) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            sa.update(_a)
            .where(_a.c.id == account_id)
            .values(last_success_at=at, needs_reauth=False, paused_until=None, **_rate_values(rate))
        )


def record_error(
    engine: Engine,
    account_id: int,
    error: str,
    *,
    at: datetime,
    needs_reauth: bool = False,
    paused_until: datetime | None = None,
    rate: RateInfo | None = None,
) -> None:
    text = redact(error)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    values: dict[str, Any] = {"last_error": text, "last_error_at": at, "paused_until": paused_until, **_rate_values(rate)}
    if needs_reauth:
        values["needs_reauth"] = True
    with write_tx(engine) as conn:
        conn.execute(sa.update(_a).where(_a.c.id == account_id).values(**values))


def record_rate(engine: Engine, account_id: int, rate: RateInfo | None) -> None:
    if rate is None:
        return
    with write_tx(engine) as conn:
        conn.execute(sa.update(_a).where(_a.c.id == account_id).values(**_rate_values(rate)))


def reset(engine: Engine, settings: Settings, name: str) -> AccountRef:
    """Clear needs-re-auth and any pause after the account was reconnected."""
    ref = ensure_account(engine, settings.account(name))
    with write_tx(engine) as conn:
        conn.execute(sa.update(_a).where(_a.c.id == ref.id).values(needs_reauth=False, paused_until=None))
    return ref


def config_changed_since(settings: Settings, when: datetime | None) -> bool:
    """True when the config file was modified after `when` (a reconnect clears a re-auth stop)."""
    if when is None or not settings.source:
        return False
    try:
        mtime = os.stat(settings.source).st_mtime
    except OSError:
        return False
    return datetime.fromtimestamp(mtime, timezone.utc) > when


# ── health reads ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class AccountHealth:
    name: str
    channel: str
    enabled: bool
    last_sync_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    needs_reauth: bool
    paused_until: datetime | None
    rate_limit: int | None
    rate_remaining: int | None
    rate_reset_at: datetime | None
    rate_usage_pct: float | None
    headroom: float | None  # 0..1, None when unknown
    open_gaps: int
    quarantined: int
    problems: tuple[str, ...]
    syncing: str | None = None  # the worker holding the account's sync lease now ("pid 7 on host a since ...")
    lease_expires_at: datetime | None = None
    # Messages sent and found by a poll in the last 24 h that no webhook had delivered first (None:
    # webhooks are not configured for the channel). More than a few: the subscription is broken.
    missed_by_webhooks: int | None = None
    # DM events its syncs read today (UTC) and their estimated cost; None where reads are not billed (Meta).
    events_read_today: int | None = None
    est_cost_today: float | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = list(self.problems)
        d["healthy"] = self.healthy
        from inbox.timefmt import json_time

        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = json_time(v)
        return d


def health(engine: Engine, settings: Settings, *, now: datetime | None = None) -> list[AccountHealth]:
    """Health of every configured account, in config order."""
    now = now or utcnow()
    refs = ensure_accounts(engine, settings.accounts)
    ids = [r.id for r in refs.values()]
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(_a).where(_a.c.id.in_(ids)))} if ids else {}
        gaps = dict(
            conn.execute(
                sa.select(_gap.c.account_id, sa.func.count()).where(_gap.c.acknowledged_at.is_(None)).group_by(_gap.c.account_id)
            ).all()
        )
        quarantined = dict(
            conn.execute(sa.select(_q.c.account_id, sa.func.count()).where(_q.c.resolved_at.is_(None)).group_by(_q.c.account_id)).all()
        )
        leases = {
            r.account_id: (r.lease_owner, r.lease_expires_at)
            for r in conn.execute(
                sa.select(_ss.c.account_id, _ss.c.lease_owner, _ss.c.lease_expires_at).where(
                    _ss.c.account_id.in_(ids), _ss.c.lease_owner.is_not(None), _ss.c.lease_expires_at > now
                )
            )
        } if ids else {}
    missed = _missed_by_webhooks(engine, now - timedelta(hours=24))
    read = reads_on(engine, ids, at=now)
    out = []
    for acc in settings.accounts:
        ref = refs[acc.name]
        row = rows[ref.id]
        rate = RateInfo(row.rate_limit, row.rate_remaining, row.rate_reset_at, row.rate_usage_pct)
        interval = interval_for(settings, acc)
        problems: list[str] = []
        # Paused until the platform's reset: waiting its turn (a pass stopped for the rate limit keeps
        # what it read and goes on after the reset), not failing -- even before its first complete pass.
        paused = row.paused_until is not None and row.paused_until > now
        if not acc.enabled:
            pass
        elif row.needs_reauth:
            problems.append("needs re-auth: " + reauth_hint(acc))
        elif row.last_success_at is None:
            if not paused:
                problems.append("failing: " + (row.last_error or "") if row.last_error else "never synced")
        elif row.last_error_at is not None and row.last_error_at > row.last_success_at:
            if not paused:
                problems.append("failing since " + row.last_error_at.strftime("%Y-%m-%d %H:%M UTC"))
        if acc.enabled and row.last_success_at is not None and not problems:
            stale_after = max(timedelta(seconds=interval * 6), timedelta(minutes=30))
            if now - row.last_success_at > stale_after and not (row.paused_until and row.paused_until > now):
                problems.append(f"stale: no successful sync for {_ago(now - row.last_success_at)}")
        owner, lease_expires_at = leases.get(ref.id, (None, None))
        out.append(
            AccountHealth(
                name=acc.name,
                channel=acc.channel.value,
                enabled=acc.enabled,
                last_sync_at=row.last_sync_at,
                last_success_at=row.last_success_at,
                last_error=row.last_error,
                last_error_at=row.last_error_at,
                needs_reauth=bool(row.needs_reauth),
                paused_until=row.paused_until if row.paused_until and row.paused_until > now else None,
                rate_limit=row.rate_limit,
                rate_remaining=row.rate_remaining,
                rate_reset_at=row.rate_reset_at,
                rate_usage_pct=row.rate_usage_pct,
                headroom=rate.headroom,
                open_gaps=int(gaps.get(ref.id, 0)),
                quarantined=int(quarantined.get(ref.id, 0)),
                problems=tuple(problems),
                syncing=redact(Holder.parse(owner).describe()) if owner else None,
                lease_expires_at=lease_expires_at,
                missed_by_webhooks=int(missed.get(ref.id, 0)) if _webhooks_on(settings, acc) else None,
                events_read_today=read.get(ref.id, 0) if billed_per_read(acc) else None,
                est_cost_today=cost(acc, read.get(ref.id, 0)),
            )
        )
    return out


def webhook_deliveries(engine: Engine) -> dict[str, int]:
    """Webhook deliveries by state (pending: acknowledged, not yet stored as messages; quarantined:
    unreadable, kept whole in `webhook_delivery` with the reason)."""
    from inbox.store.tables import webhook_delivery as _d

    with engine.connect() as conn:
        counts = dict(conn.execute(sa.select(_d.c.state, sa.func.count()).where(_d.c.state != "done").group_by(_d.c.state)).all())
    return {"pending": int(counts.get("pending", 0)), "quarantined": int(counts.get("quarantined", 0))}


def _webhooks_on(settings: Settings, acc: AccountSettings) -> bool:
    wh = settings.webhooks
    return bool(wh.x_consumer_secret_env if acc.channel.value == "x" else wh.meta_app_secret_env)


def _missed_by_webhooks(engine: Engine, since: datetime) -> dict[int, int]:
    """Per account id: messages sent since `since` that a poll stored first (`message.via`)."""
    from inbox.store.tables import message as _m

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_m.c.account_id, sa.func.count())
            .where(_m.c.via == "poll", _m.c.received_at >= since, _m.c.sent_at >= since)
            .group_by(_m.c.account_id)
        ).all()
    return {int(a): int(n) for a, n in rows}


def _ago(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"
