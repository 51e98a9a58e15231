"""Logging for the CLI and workers: one format, every line passed through the secret redactor.

Graph `paging.next` URLs and HTTP debug lines carry tokens, so redaction happens in a filter on the
handler (it sees records from every logger, including third-party ones), not at each call site.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from connectors.redact import redact
from inbox.safe_text import clean

# Chatty third-party loggers: at DEBUG they print request lines and headers, which we only want
# when the user asked for --debug.
NOISY_LOGGERS = ("tweepy", "tweepy.client", "urllib3", "urllib3.connectionpool", "requests_oauthlib", "oauthlib")

_HANDLER_FLAG = "_inbox_handler"


def safe_traceback(exc: BaseException) -> str:
    """A traceback as it may be printed: every frame, chained cause and note redacted and cleaned
    like any other line (exception messages quote URLs, headers and customer text)."""
    import traceback

    return clean(redact("".join(traceback.format_exception(exc))))


class RedactFilter(logging.Filter):
    """Masks secrets in a record's message and arguments before any handler formats it, and strips
    terminal escapes and control characters (messages may quote customer or platform text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = clean(redact(message))
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Tracebacks quote URLs and headers too: format once here and redact the text.
            record.exc_text = safe_traceback(record.exc_info[1]).rstrip("\n")
        elif record.exc_text:
            record.exc_text = clean(redact(record.exc_text))
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners and embedders swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exc"] = record.exc_text
        return _json.dumps(data, ensure_ascii=False)


def configure(level: str | int = "INFO", json: bool = False, *, debug: bool = False, stream: Any = None) -> logging.Handler:
    """Install the one handler on the root logger (idempotent: calling again replaces it).

    `debug` lets the noisy HTTP loggers down to DEBUG; otherwise they stay at INFO or above even
    when `level` is DEBUG.
    """
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    if debug:
        level = logging.DEBUG
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(old)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    setattr(handler, _HANDLER_FLAG, True)
    handler.addFilter(RedactFilter())
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else max(level, logging.INFO))
    # Alembic narrates every step at INFO; inbox.store.migrate already logs the one line that matters.
    # APScheduler logs each job's adding, running and success at INFO: `inbox run` logs one line
    # per sync per account itself (inbox.sync.account), so only its warnings and errors come through.
    for name in ("alembic", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else max(level, logging.WARNING))
    return handler
