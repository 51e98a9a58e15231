"""A Graph request's context (host, version, path, token) and which account it concerns."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.state import IG_FB_ID, PAGE_ID, MetaAccount, State
from sandbox.wire import Request


VERSION_RE = re.compile(r"^v\d{1,2}\.0$")
# The platform's own origins, which real paging links name whatever proxy or emulator was called.
PUBLIC_ORIGINS = {"facebook": "https://graph.facebook.com", "instagram": "https://graph.instagram.com"}


# ── request context ─────────────────────────────────────────────────────────────────────────
@dataclass
class Ctx:
    req: Request
    host: str  # "facebook" | "instagram"
    version: str
    parts: list[str]
    token: str | None
    link_origin: str | None = None  # paging links on this origin instead of the one called (`State.public_links`)

    @property
    def root(self) -> str:
        return f"{self.req.base_url}/{self.host}/{self.version}"

    @property
    def link_root(self) -> str:
        """Where `paging.next` / `previous` links point: the host called, or the public one."""
        return self.root if self.link_origin is None else f"{self.link_origin}/{self.version}"


def split(req: Request) -> Ctx | None:
    parts = [p for p in req.path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("facebook", "instagram") or not VERSION_RE.match(parts[1]):
        return None
    token = req.query.get("access_token")
    auth = req.headers.get("authorization", "")
    if not token and auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    if not token and req.method == "POST":
        try:
            token = req.form().get("access_token")
        except ValueError:
            token = None
    return Ctx(req, parts[0], parts[1], parts[2:], token)


def attribute(state: State, ctx: Ctx) -> MetaAccount | None:
    """Which account a request concerns (for faults, the call log and usage), without side effects."""
    if ctx.host == "instagram":
        return state.meta.get("tokoshop-ig-direct")
    if not ctx.parts:
        return state.meta.get("tokoshop-fb")
    head = ctx.parts[0]
    if head == IG_FB_ID:
        return state.meta.get("tokoshop-ig")
    if head in (PAGE_ID, "me"):
        if len(ctx.parts) > 1 and ctx.parts[1] == "conversations":
            platform = ctx.req.query.get("platform", "messenger").lower()
            return state.meta.get("tokoshop-ig" if platform == "instagram" else "tokoshop-fb")
        if len(ctx.parts) > 1 and ctx.parts[1] == "messages" and ctx.req.method == "POST":
            try:
                rid = str((ctx.req.form().get("recipient") or {}).get("id", ""))
            except (ValueError, AttributeError):
                rid = ""
            ig = state.meta.get("tokoshop-ig")
            if ig is not None and rid in ig.by_customer:
                return ig
        return state.meta.get("tokoshop-fb")
    th = state.thread_index.get(head)
    if th is not None:
        return state.meta.get(th.account)
    msg = state.msg_index.get(head)
    if msg is not None:
        return state.meta.get(msg.thread.account)
    return state.meta.get("tokoshop-fb")


def business_object(acc: MetaAccount | None) -> tuple[str, str]:
    """(key, bucket type) for the usage header."""
    if acc is None:
        return PAGE_ID, "pages"
    if acc.platform == "instagram":
        return acc.spec.platform_id, "instagram"
    return acc.spec.platform_id, "messenger"
