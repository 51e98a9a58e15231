"""Scheduled failures: the next `count` matching requests fail in a chosen way."""

from __future__ import annotations

import threading
from dataclasses import dataclass

KINDS = ("429", "500", "503", "timeout", "drop", "expired_token", "malformed", "truncated", "bad_item")
ERROR_KINDS = ("429", "500", "503", "expired_token")


@dataclass
class Fault:
    kind: str
    path: str | None  # substring of the request path
    account: str | None  # account name the request concerns
    count: int
    after_effect: bool  # a send is carried out before the failure (the client cannot know it went through)
    method: str | None = None


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, *, path: str | None = None, account: str | None = None, count: int = 1,
            after_effect: bool | None = None, method: str | None = None) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if count < 1:
            raise ValueError("count must be at least 1")
        # A timeout still carries the request out (a send is recorded; the client never hears back).
        effect = (kind == "timeout") if after_effect is None else bool(after_effect)
        fault = Fault(kind, path, account, count, effect, method.upper() if method else None)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, account: str | None) -> Fault | None:
        """The first fault matching this request, with one use spent; None if nothing matches."""
        with self._lock:
            for fault in self._faults:
                if fault.path is not None and fault.path not in path:
                    continue
                if fault.account is not None and fault.account != account:
                    continue
                if fault.method is not None and fault.method != method:
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return Fault(fault.kind, fault.path, fault.account, 1, fault.after_effect, fault.method)
        return None
