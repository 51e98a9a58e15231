"""HTTP control endpoints under /_sandbox/ for tests that drive a sandbox in another process.

Only from this machine: a request whose Host is not a loopback address, or that a browser sends from
another origin, gets 403 (see `refusal`).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict
from typing import Any, Protocol
from urllib.parse import urlsplit


class Controllable(Protocol):
    """What the control API drives (`sandbox.core.Sandbox`, which hands `handle_control` to its
    dispatch as a callback; typed here by shape, so this module imports no part of the sandbox)."""

    @property
    def calls(self) -> list[Any]: ...
    @property
    def late_requests(self) -> list[Any]: ...
    @property
    def accounts(self) -> dict[str, Any]: ...
    def inject(self, account_name: str, text: str | None = None, thread: str | None = None, customer: Any = None,
               attachments: Any = None, at: Any = None) -> str: ...
    def burst(self, account_name: str, thread_id: str, n: int) -> list[str]: ...
    def fault(self, kind: str, **options: Any) -> None: ...
    def meta_budget(self, calls: int | None, *, window_seconds: float = ..., used: dict[str, int] | None = ...) -> None: ...
    def cut_nested(self, cap: int | None) -> None: ...
    def cut_pages(self, cap: int | None) -> None: ...
    def public_links(self, on: bool = ...) -> None: ...
    def clear_faults(self) -> None: ...
    def clear_calls(self) -> None: ...
    def sent(self, account_name: str) -> list[dict[str, Any]]: ...
    def deliveries(self, account_name: str | None = None) -> dict[tuple[str, str, str], int]: ...
    def release_late(self) -> None: ...
    def wait_late(self, timeout: float = ...) -> bool: ...
    def advance(self, seconds: float) -> float: ...
    def rotate_token(self, env_name: str) -> str: ...
    def threads(self, account_name: str) -> list[str]: ...
    def thread_messages(self, account_name: str, thread_id: str) -> list[dict[str, Any]]: ...
    def config_toml(self, database: str = ..., include_ig_login: bool = ...) -> str: ...


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(headers: dict[str, str]) -> str | None:
    """Why a control request is refused, or None. The control API changes what the sandbox serves, so a
    web page the tester has open must not drive it: the Host must name a loopback address (no DNS
    rebinding) and a browser's Origin, when sent, must be a loopback one (no cross-origin POSTs)."""
    try:
        host = urlsplit("//" + headers.get("host", "")).hostname
    except ValueError:
        host = None
    if not host or not _loopback(host):
        return "Host must be a loopback address (127.0.0.1, ::1 or localhost)"
    origin = headers.get("origin")
    if origin is not None:
        try:
            parts = urlsplit(origin)
            origin_host = parts.hostname if parts.scheme in ("http", "https") else None
        except ValueError:
            origin_host = None
        if not origin_host or not _loopback(origin_host):
            return "cross-origin requests are refused"
    return None


def handle_control(sb: Controllable, method: str, name: str, query: dict[str, str], body: bytes,
                   headers: dict[str, str]) -> tuple[int, Any]:
    refused = refusal(headers)
    if refused is not None:
        return 403, {"error": f"forbidden: {refused}"}
    try:
        data: dict[str, Any] = json.loads(body) if body else {}
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return _route(sb, method, name, query, data)
    except (KeyError, ValueError, TypeError) as exc:
        return 400, {"error": f"{exc.__class__.__name__}: {exc}"}


def _route(sb: Controllable, method: str, name: str, query: dict[str, str], data: dict[str, Any]) -> tuple[int, Any]:
    if method == "POST" and name == "inject":
        mid = sb.inject(data["account"], text=data.get("text"), thread=data.get("thread"), customer=data.get("customer"),
                        attachments=data.get("attachments"), at=data.get("at"))
        return 200, {"id": mid}
    if method == "POST" and name == "burst":
        return 200, {"ids": sb.burst(data["account"], data["thread"], int(data.get("n", 25)))}
    if method == "POST" and name == "fault":
        options = {k: v for k, v in data.items() if k not in ("kind", "path", "account", "count", "after_effect", "method", "skip")}
        sb.fault(data["kind"], path=data.get("path"), account=data.get("account"), count=int(data.get("count", 1)),
                 after_effect=data.get("after_effect"), method=data.get("method"), skip=int(data.get("skip", 0)), **options)
        return 200, {"ok": True}
    if method == "POST" and name == "meta_budget":
        calls = data.get("calls")
        sb.meta_budget(None if calls is None else int(calls), window_seconds=float(data.get("window_seconds", 3600)),
                       used={str(k): int(v) for k, v in (data.get("used") or {}).items()})
        return 200, {"ok": True}
    if method == "POST" and name in ("cut_nested", "cut_pages"):
        cap = data.get("cap")
        getattr(sb, name)(None if cap is None else int(cap))
        return 200, {"ok": True}
    if method == "POST" and name == "public_links":
        sb.public_links(bool(data.get("on", True)))
        return 200, {"ok": True}
    if method == "POST" and name == "clear_faults":
        sb.clear_faults()
        return 200, {"ok": True}
    if method == "GET" and name == "calls":
        return 200, [asdict(c) for c in sb.calls]
    if method == "GET" and name == "late":
        return 200, [asdict(r) for r in sb.late_requests]
    if method == "POST" and name == "clear_calls":
        sb.clear_calls()
        return 200, {"ok": True}
    if method == "GET" and name == "sent":
        return 200, sb.sent(query["account"])
    if method == "GET" and name == "deliveries":
        counts = sb.deliveries(query.get("account"))
        return 200, [{"account": a, "recipient_id": r, "text": t, "count": n} for (a, r, t), n in sorted(counts.items())]
    if method == "POST" and name == "release_late":
        sb.release_late()
        return 200, {"ok": True}
    if method == "POST" and name == "wait_late":
        return 200, {"done": sb.wait_late(float(data.get("timeout", 60)))}
    if method == "POST" and name == "advance":
        return 200, {"now": sb.advance(float(data.get("seconds", 0)))}
    if method == "POST" and name == "rotate_token":
        return 200, {"env": data["env"], "token": sb.rotate_token(data["env"])}
    if method == "GET" and name == "threads":
        return 200, sb.threads(query["account"])
    if method == "GET" and name == "thread":
        return 200, sb.thread_messages(query["account"], query["thread"])
    if method == "GET" and name == "accounts":
        return 200, {k: {**asdict(v), "token": None} for k, v in sb.accounts.items()}
    if method == "GET" and name == "config":
        return 200, sb.config_toml(database=query.get("database", "sqlite:///inbox.db"),
                                   include_ig_login=query.get("include_ig_login") in ("1", "true"))
    return 404, {"error": f"unknown control endpoint {method} /_sandbox/{name}"}
