"""X API v2 JSON as the platform renders it: problem bodies, DM events, entities, includes, tokens."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from sandbox.state import Person, XAccount, XEvent
from sandbox.wire import Reply


PROBLEMS = "https://api.twitter.com/2/problems/"


STATUS_URL = re.compile(r"https?://(?:x|twitter)\.com/\w+/status/(\d+)")
URL_RE = re.compile(r"https?://\S+")
MENTION_RE = re.compile(r"(?<!\w)@(\w{1,15})")
HASHTAG_RE = re.compile(r"(?<!\w)#(\w+)")


def problem(status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> Reply:
    body: dict[str, Any] = {**extra, "title": title, "detail": detail, "type": type_}
    if type_ == "about:blank":
        body["status"] = status
    return Reply(status, body)


def invalid(name: str, value: str, message: str) -> Reply:
    return problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                   PROBLEMS + "invalid-request", errors=[{"parameters": {name: [value]}, "message": message}])


def unauthorized() -> Reply:
    return problem(401, "Unauthorized", "Unauthorized")


def too_many() -> Reply:
    return problem(429, "Too Many Requests", "Too Many Requests")


def server_error(status: int) -> Reply:
    title = "Service Unavailable" if status == 503 else "Internal Server Error"
    return problem(status, title, title)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def encode_token(kind: str, num: int) -> str:
    return base64.b32encode(f"{kind}{num}".encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, int] | None:
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
        return raw[0], int(raw[1:])
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


def render_event(ev: XEvent, fields: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ev.id, "event_type": ev.event_type}
    if ev.event_type == "MessageCreate":
        out["text"] = ev.text or ""
    elif ev.participants:
        out["participant_ids"] = list(ev.participants)
    for name in fields:
        if name == "sender_id" and ev.event_type == "MessageCreate":
            out["sender_id"] = ev.sender
        elif name == "dm_conversation_id":
            out["dm_conversation_id"] = ev.conv
        elif name == "created_at":
            out["created_at"] = iso(ev.created_ms)
        elif name == "attachments" and ev.media:
            out["attachments"] = {"media_keys": [ev.media["media_key"]]}
        elif name == "referenced_tweets" and ev.text:
            refs = STATUS_URL.findall(ev.text)
            if refs:
                out["referenced_tweets"] = [{"id": r} for r in refs]
        elif name == "entities" and ev.text:
            ents = entities(ev.text)
            if ents:
                out["entities"] = ents
        elif name == "participant_ids" and ev.participants:
            out["participant_ids"] = list(ev.participants)
    return out


def entities(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    urls = [{"start": m.start(), "end": m.end(), "url": m.group(0), "expanded_url": m.group(0),
             "display_url": m.group(0).split("://", 1)[1][:26]} for m in URL_RE.finditer(text)]
    mentions = [{"start": m.start(), "end": m.end(), "username": m.group(1)} for m in MENTION_RE.finditer(text)]
    tags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in HASHTAG_RE.finditer(text)]
    if urls:
        out["urls"] = urls
    if mentions:
        out["mentions"] = mentions
    if tags:
        out["hashtags"] = tags
    return out


def _user(acc: XAccount, uid: str, fields: list[str]) -> dict[str, Any]:
    person = acc.users.get(uid) or Person(uid, f"user{uid[-4:]}", f"user{uid}")
    out: dict[str, Any] = {"id": uid, "name": person.name or person.username or uid, "username": person.username or f"user{uid}"}
    extra = {
        "protected": False,
        "verified": uid == acc.me.id,
        "profile_image_url": f"https://pbs.twimg.com/profile_images/{uid[-10:]}/avatar_normal.jpg",
        "description": "Official customer care of TokoShop Indonesia" if uid == acc.me.id else "",
    }
    for name in fields:
        if name in extra:
            out[name] = extra[name]
    return out


def render_includes(acc: XAccount, events: list[XEvent], opts: dict[str, list[str]]) -> dict[str, Any]:
    exp = set(opts["expansions"])
    includes: dict[str, Any] = {}
    if "sender_id" in exp or "participant_ids" in exp:
        ids: list[str] = []
        for ev in events:
            if "sender_id" in exp and ev.event_type == "MessageCreate" and ev.sender not in ids:
                ids.append(ev.sender)
            if "participant_ids" in exp:
                for pid in ev.participants or ():
                    if pid not in ids:
                        ids.append(pid)
        if ids:
            includes["users"] = [_user(acc, uid, opts["user.fields"]) for uid in ids]
    if "attachments.media_keys" in exp:
        items = []
        for ev in events:
            if ev.media:
                m = {"media_key": ev.media["media_key"], "type": ev.media["type"]}
                for name in opts["media.fields"]:
                    if name in ev.media:
                        m[name] = ev.media[name]
                items.append(m)
        if items:
            includes["media"] = items
    if "referenced_tweets.id" in exp:
        tweets = []
        for ev in events:
            for tid in STATUS_URL.findall(ev.text or ""):
                tweets.append({"id": tid, "text": "Update: pengiriman ke wilayah Jabodetabek mengalami keterlambatan 1-2 hari karena banjir. Mohon maaf 🙏"})
        if tweets:
            includes["tweets"] = tweets
    return includes
