"""Signed webhook deliveries of every message the sandbox creates, as Meta and X send them.

Meta: `{"object": "page"|"instagram", "entry": [{"id", "time", "messaging": [...]}]}` signed with
`X-Hub-Signature-256: sha256=<hex>`; our own messages (sends, messages typed in the app) arrive as
echoes (`is_echo`). X: the Account Activity shape (`for_user_id`, `direct_message_events`, `users`)
or the X Activity API envelope (`dm.received` / `dm.sent`), signed with
`x-twitter-webhooks-signature: sha256=<base64>`.

Switches make the real loop's faults: `drop` and `duplicate` (probabilities), `delay` (seconds
before each delivery), `reorder` (deliveries of a burst shuffled). Deliveries go out from one
thread, after the message is complete (attachments are set after it is created).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from typing import Any

from sandbox.state import Msg, State, XEvent


@dataclass
class WebhookStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    failed: int = 0  # not answered 200 (the receiver was down, or refused it)
    dropped_ids: list[str] = field(default_factory=list)
    delivered_ids: list[str] = field(default_factory=list)  # answered 200 at least once, per delivery


@dataclass
class WebhookConfig:
    meta_url: str | None
    x_url: str | None
    meta_secret: str
    x_secret: str
    x_shape: str = "account_activity"  # or "activity"
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: bool = False
    # How the bytes go out: `encoding` "gzip" / "deflate" compresses the body, `bom` prefixes a UTF-8
    # BOM, `sign` says which bytes the signature is over ("sent": the compressed ones, or "plain").
    encoding: str | None = None
    bom: bool = False
    sign: str = "sent"

    def __post_init__(self) -> None:
        # Refused here rather than sent mislabelled: a test asking for "br" would get zlib bytes.
        if self.encoding not in (None, "gzip", "deflate"):
            raise ValueError(f"sandbox webhooks send gzip or deflate bodies, not {self.encoding!r}")
        if self.sign not in ("sent", "plain"):
            raise ValueError(f"sandbox webhooks sign the 'sent' or the 'plain' bytes, not {self.sign!r}")


class WebhookSender:
    def __init__(self, state: State, config: WebhookConfig, seed: int = 7) -> None:
        self.state = state
        self.config = config
        self.rng = random.Random(seed)
        self.stats = WebhookStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        state.listeners.append(self._created)
        self._thread.start()

    def close(self) -> None:
        if self._created in self.state.listeners:
            self.state.listeners.remove(self._created)
        self._queue.put(None)
        self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once every queued delivery has been sent (or dropped)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def redeliver(self, acc: Any, item: Msg | XEvent) -> None:
        """Send the delivery of an existing message again (as the platforms retry)."""
        self._created(acc, item)

    # ── producing ───────────────────────────────────────────────────────────────────────────
    def _created(self, acc: Any, item: Msg | XEvent) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((acc, item))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            if self.config.reorder:
                time.sleep(0.05)  # gather what arrives with it, then shuffle
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.append(more)
                self.rng.shuffle(batch)
            for acc, msg in batch:
                try:
                    self._deliver(acc, msg)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver(self, acc: Any, msg: Msg | XEvent) -> None:
        cfg = self.config
        with self.state.lock:
            built = self._meta(acc, msg) if isinstance(msg, Msg) else self._x(acc, msg)
        if built is None:
            return
        url, body, headers = self._wire(*built)
        if cfg.delay:
            time.sleep(cfg.delay)
        if cfg.drop and self.rng.random() < cfg.drop:
            self.stats.dropped += 1
            self.stats.dropped_ids.append(msg.id)
            return
        copies = 2 if cfg.duplicate and self.rng.random() < cfg.duplicate else 1
        if copies == 2:
            self.stats.duplicated += 1
        ok = [self._post(url, body, headers) for _ in range(copies)]
        if any(ok):
            self.stats.delivered_ids.append(msg.id)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                ok = resp.status == 200
        except (urllib.error.URLError, OSError):
            ok = False
        if ok:
            self.stats.sent += 1
        else:
            self.stats.failed += 1
        return ok

    def _wire(self, url: str, raw: bytes) -> tuple[str, bytes, dict[str, str]]:
        """The delivery as the switches send it (BOM-prefixed, compressed), signed as the platform signs."""
        cfg = self.config
        plain = b"\xef\xbb\xbf" + raw if cfg.bom else raw
        headers = {"Content-Type": "application/json"}
        sent = plain
        if cfg.encoding:
            sent = gzip.compress(plain) if cfg.encoding == "gzip" else zlib.compress(plain)
            headers["Content-Encoding"] = cfg.encoding
        signed = sent if cfg.sign == "sent" else plain
        digest = hmac.new((cfg.meta_secret if url == cfg.meta_url else cfg.x_secret).encode(), signed, hashlib.sha256)
        if url == cfg.meta_url:
            headers["X-Hub-Signature-256"] = f"sha256={digest.hexdigest()}"
        else:
            headers["x-twitter-webhooks-signature"] = "sha256=" + base64.b64encode(digest.digest()).decode("ascii")
        return url, sent, headers

    # ── bodies ──────────────────────────────────────────────────────────────────────────────
    def _meta(self, acc: Any, msg: Msg) -> tuple[str, bytes] | None:
        cfg = self.config
        if not cfg.meta_url:
            return None
        ours = acc.spec.platform_id
        customer = msg.thread.customer.id
        message: dict[str, Any] = {"mid": msg.id}
        if msg.text:
            message["text"] = msg.text
        attachments = [_meta_attachment(a) for a in (msg.attachments or [])]
        story = msg.story or {}
        if "mention" in story:
            attachments.insert(0, {"type": "story_mention", "payload": {"url": story["mention"].get("link")}})
        if "reply_to" in story:
            message["reply_to"] = {"story": {"url": story["reply_to"].get("link"), "id": story["reply_to"].get("id")}}
        for share in msg.shares or []:
            attachments.append({"type": "share", "payload": {"url": share.get("link"), "title": share.get("name")}})
        if attachments:
            message["attachments"] = attachments
        if msg.unsupported:
            message["is_unsupported"] = True
        if msg.outbound:
            message["is_echo"] = True
            if msg.metadata:
                message["metadata"] = msg.metadata
        event = {
            "sender": {"id": ours if msg.outbound else customer},
            "recipient": {"id": customer if msg.outbound else ours},
            "timestamp": msg.created_ms,
            "message": message,
        }
        body = {"object": "page" if acc.platform == "messenger" else "instagram",
                "entry": [{"id": ours, "time": msg.created_ms, "messaging": [event]}]}
        return cfg.meta_url, json.dumps(body, separators=(",", ":")).encode("utf-8")  # non-ASCII as \\u escapes, as Meta sends

    def _x(self, acc: Any, ev: XEvent) -> tuple[str, bytes] | None:
        cfg = self.config
        if not cfg.x_url or ev.event_type != "MessageCreate" or "-" not in ev.conv:
            return None  # group conversations and joins are not in the v1.1 DM shape
        me = acc.me.id
        other = next((p for p in ev.conv.split("-") if p != me), me)
        recipient = other if ev.sender == me else me
        data: dict[str, Any] = {"text": ev.text or ""}
        if ev.media:
            m = ev.media
            media_id = str(m.get("media_key", "")).partition("_")[2] or ev.id
            entry: dict[str, Any] = {"id_str": media_id, "type": "photo" if m.get("type") == "photo" else "video",
                                     "media_url_https": m.get("url") or m.get("preview_image_url")}
            if m.get("variants"):
                entry["video_info"] = {"variants": [{"bitrate": v.get("bit_rate", 0), "content_type": v.get("content_type"), "url": v.get("url")}
                                                    for v in m["variants"]]}
            data["attachment"] = {"type": "media", "media": entry}
        event = {"type": "message_create", "id": ev.id, "created_timestamp": str(ev.created_ms),
                 "message_create": {"target": {"recipient_id": recipient}, "sender_id": ev.sender, "message_data": data}}
        users = {}
        for uid in (ev.sender, recipient):
            person = acc.users.get(uid)
            if person is not None:
                users[uid] = {"id": uid, "id_str": uid, "name": person.name, "screen_name": person.username}
        if cfg.x_shape == "activity":
            body: dict[str, Any] = {"data": {
                "event_type": "dm.sent" if ev.sender == me else "dm.received",
                "event_uuid": f"{ev.id}-{self.rng.randrange(10**9)}",
                "filter": {"user_id": me},
                "payload": {"direct_message_events": [event], "users": users},
            }}
        else:
            body = {"for_user_id": me, "direct_message_events": [event], "users": users}
        return cfg.x_url, json.dumps(body, separators=(",", ":")).encode("utf-8")


def _meta_attachment(att: dict[str, Any]) -> dict[str, Any]:
    """A Graph attachment (image_data / video_data / file_url) as the webhook's `{type, payload}`."""
    if isinstance(att.get("image_data"), dict):
        return {"type": "image", "payload": {"url": att["image_data"].get("url")}}
    if isinstance(att.get("video_data"), dict):
        return {"type": "video", "payload": {"url": att["video_data"].get("url")}}
    mime = str(att.get("mime_type") or "")
    kind = "audio" if mime.startswith("audio/") else "file"
    return {"type": kind, "payload": {"url": att.get("file_url") or att.get("url")}}
