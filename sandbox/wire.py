"""What a handler sees of a request and what it hands back, independent of http.server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

JSON_GRAPH = "application/json; charset=UTF-8"
JSON_X = "application/json; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str  # full path, e.g. /facebook/v23.0/104920378912345/conversations
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # http://127.0.0.1:PORT

    def form(self) -> dict[str, Any]:
        """The body as a dict: JSON, or form fields whose values may themselves be JSON strings."""
        if not self.body:
            return {}
        ctype = self.headers.get("content-type", "")
        text = self.body.decode("utf-8", errors="replace")
        if "json" in ctype or text.lstrip().startswith("{"):
            data = json.loads(text)
            return data if isinstance(data, dict) else {}
        out: dict[str, Any] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            try:
                out[key] = json.loads(value) if value[:1] in "{[" else value
            except ValueError:
                out[key] = value
        return out


@dataclass
class Reply:
    status: int
    payload: Any = None  # JSON-serialisable; ignored when `raw` is set
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    account: str | None = None

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
