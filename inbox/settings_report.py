"""What `inbox config check` and `config show` report about a config: every account's secrets
resolved (set or not, never the value), the effective settings with passwords masked.

Values only: the CLI renders them (as JSON, or lines and TOML for people).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inbox.errors import ConfigError
    from inbox.settings import AccountSettings, Settings


def mask_url(url: str) -> str:
    """A database or base URL as it may be shown: every password form masked."""
    from connectors.redact import mask_url as mask

    return mask(url)


def secret_view(acc: AccountSettings) -> dict[str, dict[str, Any]]:
    """Each secret of an account: its variable name, whether it is set, and the masked value."""
    from connectors.redact import mask

    view: dict[str, dict[str, Any]] = {}
    for key in acc.secret_env_keys():
        var = getattr(acc, key)
        value = (os.environ.get(var) or "").strip() if var else None
        view[key] = {"env": var, "set": bool(value), "masked": mask(value)}
    return view


def effective(settings: Settings) -> dict[str, Any]:
    """The settings with defaults filled in; URLs masked, each secret as its variable and status."""
    data = settings.model_dump(mode="json", exclude_none=False)
    data["database"] = mask_url(settings.database_url())
    accounts = []
    for acc, raw in zip(settings.accounts, data.get("accounts", [])):
        raw["base_url"] = mask_url(acc.resolved_base_url())
        for key, view in secret_view(acc).items():
            raw[key] = view
        accounts.append(raw)
    data["accounts"] = accounts
    return data


def failed_check(path: Path | None, exc: ConfigError) -> dict[str, Any]:
    """The check report of a config that does not load: every problem of the file."""
    return {"ok": False, "file": str(path) if path else None, "errors": list(exc.problems), "accounts": []}


def check(path: Path | None, settings: Settings) -> dict[str, Any]:
    """The check report of a loaded config: each account's secret variables and spec, the
    webhook keys; `ok` is False when a command would fail on it."""
    from inbox.errors import ConfigError

    report: dict[str, Any] = {"ok": True, "file": str(path) if path else None, "errors": [], "accounts": []}
    for acc in settings.accounts:
        missing = [v["env"] for v in secret_view(acc).values() if not v["set"]]
        entry: dict[str, Any] = {"name": acc.name, "channel": acc.channel.value, "enabled": acc.enabled,
                                 "base_url": mask_url(acc.resolved_base_url()), "ok": not missing, "missing_env": missing}
        if not missing:
            try:
                acc.to_spec()
            except ConfigError as exc:
                entry.update(ok=False, error=exc.message)
        report["accounts"].append(entry)
        for var in acc.padded_secrets():
            report.setdefault("warnings", []).append(
                f"account '{acc.name}': environment variable {var} has whitespace around its value (a trailing newline?); it is stripped")
        if not entry["ok"] and not acc.enabled:
            # A disabled account is not synced: its unset variables are worth a note, not a failure.
            report.setdefault("warnings", []).extend(f"account '{acc.name}' (disabled): environment variable {v} is not set" for v in missing)
        elif not entry["ok"]:
            report["ok"] = False
            for var in missing:
                report["errors"].append(f"account '{acc.name}': environment variable {var} is not set")
            if entry.get("error"):
                report["errors"].append(entry["error"])
    wh = settings.webhooks
    if wh.meta_app_secret_env or wh.meta_verify_token_env or wh.x_consumer_secret_env:
        # Webhooks are configured: every key an enabled account's channel needs must be set.
        problems = wh.missing({a.channel for a in settings.accounts if a.enabled})
        report["webhooks"] = {"ok": not problems, "errors": problems}
        if problems:
            report["ok"] = False
            report["errors"].extend(problems)
    return report
