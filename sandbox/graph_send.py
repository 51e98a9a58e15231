"""The Send API: text and metadata limits, the messaging window and tags, the stored echo."""

from __future__ import annotations

from typing import Any

from sandbox import media
from sandbox.state import MetaAccount, State, Thread
from sandbox.wire import Reply
from sandbox.graph_errors import GraphError
from sandbox.graph_render import DAY_MS
from sandbox.graph_request import Ctx


TEXT_LIMIT_MESSENGER = 2000  # characters
TEXT_LIMIT_INSTAGRAM = 1000  # UTF-8 bytes
METADATA_LIMIT = 1000
OUTSIDE_WINDOW_SUBCODE = {"messenger": 2018278, "instagram": 2534022}
MESSENGER_ONLY_TAGS = {"ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"}


def send(state: State, ctx: Ctx, owners: list[MetaAccount]) -> Reply:
    body = ctx.req.form()
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        raise GraphError(100, "(#100) The parameter recipient is required", type_="OAuthException")
    rid = str(recipient["id"])
    acc = th = None
    for owner in owners:
        th = owner.by_customer.get(rid)
        if th is not None:
            acc = owner
            break
    if acc is None or th is None:
        raise GraphError(100, "(#100) No matching user found", subcode=2018001)
    if body.get("sender_action") and not body.get("message"):
        return Reply(200, {"recipient_id": rid})
    message = body.get("message")
    if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
        raise GraphError(100, "(#100) The parameter message is required and must contain text or an attachment")
    messaging_type = str(body.get("messaging_type") or "")
    tag = body.get("tag")
    text = message.get("text")
    if text is not None and not isinstance(text, str):
        raise GraphError(100, "(#100) Param message[text] must be a string")
    if text:
        if acc.platform == "messenger" and len(text) > TEXT_LIMIT_MESSENGER:
            raise GraphError(100, f"(#100) Length of param message[text] must be less than or equal to {TEXT_LIMIT_MESSENGER}")
        if acc.platform == "instagram" and len(text.encode("utf-8")) > TEXT_LIMIT_INSTAGRAM:
            raise GraphError(100, "(#100) Length of param message[text] must be less than or equal to 1000 bytes")
    metadata = message.get("metadata")
    if metadata is not None and len(str(metadata)) > METADATA_LIMIT:
        raise GraphError(100, f"(#100) Length of param message[metadata] must be less than or equal to {METADATA_LIMIT}")
    _check_window(state, acc, th, messaging_type, tag)
    now = state.now()
    msg = state.add_msg(th, int(now * 1000), True, text or None)
    msg.metadata = str(metadata) if metadata is not None else None
    attachment = message.get("attachment")
    if isinstance(attachment, dict):
        payload = attachment.get("payload") or {}
        spec = {"type": attachment.get("type", "file"), "url": payload.get("url") if isinstance(payload, dict) else None}
        msg.attachments = [media.from_spec(state.rng, now, spec)]
    acc.sent.append({
        "message_id": msg.id,
        "recipient_id": rid,
        "thread_id": th.id,
        "text": text,
        "messaging_type": messaging_type,
        "tag": tag,
        "metadata": msg.metadata,
        "attachment": attachment,
        "at": now,
    })
    return Reply(200, {"recipient_id": rid, "message_id": msg.id})


def _check_window(state: State, acc: MetaAccount, th: Thread, messaging_type: str, tag: Any) -> None:
    if messaging_type not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
        raise GraphError(100, "(#100) param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
    last = th.last_customer_ms()
    age = state.now_ms() - last if last is not None else None
    allowed: bool
    if messaging_type in ("RESPONSE", "UPDATE"):
        allowed = age is not None and age <= DAY_MS
    else:
        if not tag:
            raise GraphError(100, "(#100) Param tag is required when messaging_type is MESSAGE_TAG")
        if tag == "HUMAN_AGENT":
            allowed = age is not None and age <= 7 * DAY_MS
        elif acc.platform == "messenger" and tag in MESSENGER_ONLY_TAGS:
            allowed = True
        elif acc.platform == "messenger" and tag == "CUSTOMER_FEEDBACK":
            allowed = age is not None and age <= 7 * DAY_MS
        else:
            raise GraphError(100, f"(#100) Invalid tag: {tag}")
    if not allowed:
        raise GraphError(
            10,
            "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
            "https://developers.facebook.com/docs/messenger-platform/policy-overview",
            subcode=OUTSIDE_WINDOW_SUBCODE[acc.platform],
        )
