"""The sandbox over real HTTP on 127.0.0.1: documented shapes, paging, limits, errors, faults, speed."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sandbox import Sandbox

PAGE_ID = "104920378912345"
IG_FB_ID = "17841400000000001"
IG_DIRECT_ID = "17841400000000002"
X_ME = "1500000000000000001"
GRAPH_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")
X_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
INVOICE = re.compile(r"INV/\d{8}/MPL/\d{10}")
DAY = 86400
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "payloads"


# ── helpers ─────────────────────────────────────────────────────────────────────────────────
class Graph:
    def __init__(self, sb: Sandbox, host: str = "facebook", token: str | None = None) -> None:
        self.sb = sb
        self.root = f"{sb.base_url}/{host}/v23.0"
        self.token = token or sb.env()["INBOX_SANDBOX_FB_TOKEN" if host == "facebook" else "INBOX_SANDBOX_IG_TOKEN"]
        self.http = requests.Session()

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.root}/{path}", params={"access_token": self.token, **params}, timeout=5)

    def send(self, recipient: str, text: str, messaging_type: str = "RESPONSE", tag: str | None = None,
             node: str = "me", **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"recipient": {"id": recipient}, "messaging_type": messaging_type, "message": {"text": text, **extra}}
        if tag:
            body["tag"] = tag
        return self.http.post(f"{self.root}/{node}/messages", params={"access_token": self.token}, json=body, timeout=5)


class X:
    def __init__(self, sb: Sandbox) -> None:
        self.root = f"{sb.base_url}/x"
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + sb.env()["INBOX_SANDBOX_X_TOKEN"]

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.root}/{path}", params=params, timeout=5)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.root}/{path}", json=body, timeout=5)


FULL = {"dm_event.fields": "id,text,event_type,created_at,dm_conversation_id,sender_id,attachments"}


def graph_error(resp: requests.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code", "fbtrace_id"} <= set(body["error"])
    return body["error"]


def customer_of(sb: Sandbox, account: str, thread: str) -> str:
    return next(m["from_id"] for m in sb.thread_messages(account, thread) if not m["outbound"])


def thread_by_age(sb: Sandbox, account: str, lo_h: float, hi_h: float) -> str:
    """A thread whose last customer message is between lo_h and hi_h hours old."""
    now_ms = sb.now() * 1000
    for tid in sb.threads(account):
        last = max(m["created_ms"] for m in sb.thread_messages(account, tid) if not m["outbound"])
        if lo_h * 3600_000 < now_ms - last < hi_h * 3600_000:
            return tid
    raise AssertionError(f"no {account} thread with last customer message {lo_h}-{hi_h} h old")


def walk_conversations(g: Graph, node: str, **params: Any) -> list[dict[str, Any]]:
    resp = g.get(f"{node}/conversations", **params)
    items: list[dict[str, Any]] = []
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["data"]
        nxt = body.get("paging", {}).get("next")
        if not nxt:
            return items
        resp = g.http.get(nxt, timeout=5)


# ── Graph: conversations ────────────────────────────────────────────────────────────────────
def test_conversations_newest_first_with_absolute_next_links(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    first = g.get(f"{PAGE_ID}/conversations", platform="messenger", fields="id,updated_time,participants", limit=4)
    assert first.status_code == 200
    body = first.json()
    assert len(body["data"]) == 4 and set(body["paging"]["cursors"]) == {"before", "after"}
    nxt = body["paging"]["next"]
    assert nxt.startswith(sandbox.base_url + "/facebook/v23.0/")
    assert parse_qs(urlsplit(nxt).query)["access_token"] == [g.token]
    items = walk_conversations(g, PAGE_ID, platform="messenger", fields="id,updated_time,participants", limit=4)
    ids = [c["id"] for c in items]
    assert ids == sandbox.threads("tokoshop-fb") and len(set(ids)) == len(ids)
    times = [c["updated_time"] for c in items]
    assert all(GRAPH_TIME.match(t) for t in times) and times == sorted(times, reverse=True)
    for conv in items:
        assert conv["id"].startswith("t_")
        people = conv["participants"]["data"]
        assert {p["id"] for p in people} >= {PAGE_ID}
        assert all(set(p) == {"name", "email", "id"} for p in people)
        newest = sandbox.thread_messages("tokoshop-fb", conv["id"])[-1]
        assert conv["updated_time"] == newest["created_time"]  # updated_time is the newest message's time


def test_conversations_default_fields_and_last_page(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    body = g.get(f"{PAGE_ID}/conversations", platform="messenger", limit=100).json()
    assert all(set(c) == {"id", "updated_time"} for c in body["data"])
    assert "next" not in body["paging"]  # the last page has no next


def test_instagram_through_page_and_instagram_login(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    ig = g.get(f"{PAGE_ID}/conversations", platform="instagram", fields="id,updated_time,participants").json()["data"]
    assert [c["id"] for c in ig] == sandbox.threads("tokoshop-ig")
    assert all(set(p) == {"username", "id"} for c in ig for p in c["participants"]["data"])
    assert g.get(f"{IG_FB_ID}/conversations").json()["data"] == [{"id": c["id"], "updated_time": c["updated_time"]} for c in ig[:25]]
    direct = Graph(sandbox, host="instagram")
    for node in ("me", IG_DIRECT_ID):
        data = direct.get(f"{node}/conversations", platform="instagram").json()["data"]
        assert [c["id"] for c in data] == sandbox.threads("tokoshop-ig-direct")
    # A Page token is not an Instagram-Login token, and the other way round.
    wrong = Graph(sandbox, host="instagram", token=g.token).get("me/conversations")
    assert wrong.status_code == 400 and graph_error(wrong)["code"] == 190
    assert graph_error(Graph(sandbox, token="EAAnotvalid").get(f"{PAGE_ID}/conversations"))["code"] == 190


def test_user_id_lookup_and_unknown_field(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    tid = sandbox.threads("tokoshop-fb")[3]
    psid = customer_of(sandbox, "tokoshop-fb", tid)
    assert [c["id"] for c in g.get(f"{PAGE_ID}/conversations", platform="messenger", user_id=psid).json()["data"]] == [tid]
    bad = g.get(f"{PAGE_ID}/conversations", platform="messenger", fields="id,nonsense")
    assert bad.status_code == 400 and graph_error(bad)["code"] == 100
    missing = g.get("t_0000000000")
    assert graph_error(missing)["code"] == 100 and graph_error(missing)["error_subcode"] == 33


# ── Graph: messages ─────────────────────────────────────────────────────────────────────────
def test_messages_newest_first_and_twenty_message_horizon(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    long_threads = [t for t in sandbox.threads("tokoshop-fb") if len(sandbox.thread_messages("tokoshop-fb", t)) > 20]
    assert long_threads, "the seed has a thread longer than the readable horizon"
    tid = long_threads[0]
    everything = sandbox.thread_messages("tokoshop-fb", tid)
    conv = g.get(tid, fields="id,message_count,updated_time").json()
    assert conv["message_count"] == len(everything)
    data = g.get(f"{tid}/messages", fields="id,created_time,from,to,message", limit=50).json()["data"]
    assert [m["id"] for m in data] == [m["id"] for m in reversed(everything)][:20]
    assert [m["created_time"] for m in data] == sorted((m["created_time"] for m in data), reverse=True)
    old = everything[0]["id"]
    assert old in sandbox.all_message_ids("tokoshop-fb")
    gone = g.get(old, fields="id,message")
    assert gone.status_code == 400 and graph_error(gone)["code"] == 100
    assert g.get(data[-1]["id"], fields="id,message").status_code == 200


def test_message_paging_within_thread(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    tid = sandbox.threads("tokoshop-fb")[0]
    sandbox.burst("tokoshop-fb", tid, 7)
    first = g.get(tid, fields="messages.limit(3){id,created_time,message}").json()
    assert first["id"] == tid
    page = first["messages"]
    seen = [m["id"] for m in page["data"]]
    nxt = page["paging"]["next"]
    assert nxt.startswith(f"{g.root}/{tid}/messages?") and "access_token=" in nxt
    while nxt:
        body = g.http.get(nxt, timeout=5).json()
        seen += [m["id"] for m in body["data"]]
        nxt = body.get("paging", {}).get("next")
    expected = [m["id"] for m in reversed(sandbox.thread_messages("tokoshop-fb", tid))][:20]
    assert seen == expected


def test_nested_messages_in_listing_and_previous_cursor(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    body = g.get(f"{PAGE_ID}/conversations", platform="messenger", limit=3,
                 fields="id,updated_time,messages.limit(2){id,created_time,message}").json()
    for conv in body["data"]:
        newest = list(reversed(sandbox.thread_messages("tokoshop-fb", conv["id"])))
        assert [m["id"] for m in conv["messages"]["data"]] == [m["id"] for m in newest[:2]]
        assert conv["messages"]["data"][0]["created_time"] == conv["updated_time"]
    second = g.http.get(body["paging"]["next"], timeout=5).json()
    back = g.http.get(second["paging"]["previous"], timeout=5).json()
    assert [c["id"] for c in back["data"]] == [c["id"] for c in body["data"]]


def test_paging_links_can_name_the_platforms_public_host(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    fields = "id,updated_time,messages.limit(1){id}"
    own = g.get(f"{PAGE_ID}/conversations", platform="messenger", limit=1, fields=fields).json()
    assert own["paging"]["next"].startswith(f"{sandbox.base_url}/facebook/v23.0/{PAGE_ID}/conversations?")
    sandbox.public_links()
    body = g.get(f"{PAGE_ID}/conversations", platform="messenger", limit=1, fields=fields).json()
    assert body["paging"]["next"].startswith(f"https://graph.facebook.com/v23.0/{PAGE_ID}/conversations?")
    assert body["data"][0]["messages"]["paging"]["next"].startswith("https://graph.facebook.com/v23.0/")
    direct = Graph(sandbox, host="instagram").get("me/conversations", platform="instagram", limit=1).json()
    assert direct["paging"]["next"].startswith("https://graph.instagram.com/v23.0/")
    sandbox.public_links(False)
    again = g.get(f"{PAGE_ID}/conversations", platform="messenger", limit=1, fields=fields).json()
    assert again["paging"]["next"] == own["paging"]["next"]


def test_nested_messages_page_within_the_horizon_and_can_be_cut_short(sandbox: Sandbox) -> None:
    """`messages.limit(N){...}` in the listing: at most N newest messages per thread, never past the
    20 readable ones; its `paging.next` reads on through `/{thread}/messages` within the horizon, and
    is absent when the edge holds every readable message. `cut_nested(k)` serves k with `next` on."""
    g = Graph(sandbox)
    tid = sandbox.threads("tokoshop-fb")[0]
    sandbox.burst("tokoshop-fb", tid, 25)  # 25 new: only the newest 20 stay readable
    readable = [m["id"] for m in reversed(sandbox.thread_messages("tokoshop-fb", tid)) if m["readable"]]
    assert len(readable) == 20

    def row(**params: Any) -> dict[str, Any]:
        body = g.get(f"{PAGE_ID}/conversations", platform="messenger", **params).json()
        return next(c for c in body["data"] if c["id"] == tid)

    assert [m["id"] for m in row(fields="id,messages.limit(100){id}")["messages"]["data"]] == readable
    whole = row(fields="id,message_count,messages.limit(20){id,created_time}")
    assert whole["message_count"] > 20 and len(whole["messages"]["data"]) == 20
    assert "next" not in whole["messages"]["paging"]  # nothing more is readable
    short = row(fields="id,messages.limit(7){id,created_time}")["messages"]
    assert [m["id"] for m in short["data"]] == readable[:7]
    seen, nxt = [m["id"] for m in short["data"]], short["paging"]["next"]
    assert urlsplit(nxt).path.endswith(f"/{tid}/messages")
    while nxt:
        page = g.http.get(nxt, timeout=5).json()
        seen += [m["id"] for m in page["data"]]
        nxt = page.get("paging", {}).get("next")
    assert seen == readable
    sandbox.cut_nested(3)
    cut = row(fields="id,messages.limit(20){id}")["messages"]
    assert [m["id"] for m in cut["data"]] == readable[:3] and "next" in cut["paging"]
    rest = g.http.get(cut["paging"]["next"], timeout=5).json()
    assert [m["id"] for m in rest["data"]] == readable[3:]  # the thread's own edge is not cut
    sandbox.cut_nested(None)
    assert len(row(fields="id,messages.limit(20){id}")["messages"]["data"]) == 20


def test_faults_apply_to_the_listing_with_nested_messages(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    fields = "id,updated_time,messages.limit(20){id,created_time,from,message}"
    sandbox.fault("503", path="/conversations", account="tokoshop-fb")
    assert g.get(f"{PAGE_ID}/conversations", platform="messenger", fields=fields).status_code == 503
    body = g.get(f"{PAGE_ID}/conversations", platform="messenger", fields=fields).json()
    target = body["data"][0]["messages"]["data"][0]["id"]
    sandbox.fault("poison", path="/conversations", target=target, field="created_time", value=None)
    poisoned = g.get(f"{PAGE_ID}/conversations", platform="messenger", fields=fields).json()
    assert "created_time" not in poisoned["data"][0]["messages"]["data"][0]
    sandbox.clear_faults()
    sandbox.fault("bad_item", path="/conversations")
    broken = g.get(f"{PAGE_ID}/conversations", platform="messenger", fields=fields).json()["data"]
    assert sum("updated_time" not in c for c in broken) == 1  # one row broken, its nested edge intact
    assert all(c["messages"]["data"] for c in broken)
    assert graph_error(g.get(f"{PAGE_ID}/conversations", platform="messenger", fields="id,messages.limit(x){id}"))["code"] == 100


def test_message_node_shapes(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    fields = "id,created_time,from,to,message,attachments,shares,story,sticker,is_unsupported"
    found: dict[str, dict[str, Any]] = {}
    for acc in ("tokoshop-fb", "tokoshop-ig"):
        for tid in sandbox.threads(acc):
            for m in g.get(f"{tid}/messages", fields=fields).json()["data"]:
                assert GRAPH_TIME.match(m["created_time"])
                assert isinstance(m["is_unsupported"], bool)
                if acc == "tokoshop-ig":
                    assert set(m["from"]) == {"username", "id"}
                else:
                    assert set(m["from"]) == {"name", "email", "id"} and m["from"]["email"].endswith("@facebook.com")
                assert len(m["to"]["data"]) == 1
                story = m.get("story", {})
                for key in ("reply_to", "mention"):
                    if key in story:
                        found["story_" + key] = m
                for att in m.get("attachments", {}).get("data", []):
                    found.setdefault(att["mime_type"].split("/")[0], att)
                if "shares" in m:
                    found["share"] = m
                if m["is_unsupported"]:
                    found["unsupported"] = m
                if m["from"]["id"] in (PAGE_ID, IG_FB_ID):
                    found["brand"] = m
    assert {"story_reply_to", "story_mention", "image", "video", "share", "unsupported", "brand"} <= set(found)
    assert "fbcdn.net" in found["image"]["image_data"]["url"] and "oe=" in found["image"]["image_data"]["url"]
    assert found["video"]["mime_type"] == "video/mp4" and "url" in found["video"]["video_data"]
    assert found["story_mention"]["story"]["mention"]["link"].startswith("https://lookaside.fbsbx.com/")
    assert "message" not in found["story_mention"]  # attachment-only: no text


def test_message_detail_matches_listing(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    tid = sandbox.threads("tokoshop-ig")[0]
    listed = g.get(f"{tid}/messages", fields="id,created_time,from,to,message,story").json()["data"][0]
    detail = g.get(listed["id"], fields="id,created_time,from,to,message,story").json()
    assert detail == listed
    assert set(g.get(listed["id"]).json()) == {"id", "created_time"}


def test_profile_nodes_and_token_introspection(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    assert g.get("me", fields="id,name").json() == {"id": PAGE_ID, "name": "TokoShop Indonesia"}
    assert g.get(PAGE_ID, fields="instagram_business_account").json()["instagram_business_account"] == {"id": IG_FB_ID}
    info = g.get("debug_token", input_token=g.token).json()["data"]
    assert info["is_valid"] is True and "pages_messaging" in info["scopes"]
    assert g.get("debug_token", input_token="EAAother").json()["data"]["is_valid"] is False
    direct = Graph(sandbox, host="instagram")
    assert direct.get("me", fields="user_id,username").json() == {"user_id": IG_DIRECT_ID, "username": "tokoshop.id", "id": IG_DIRECT_ID}
    me = X(sandbox).get("2/users/me").json()["data"]
    assert me == {"id": X_ME, "name": "TokoShop Care", "username": "TokoShopCare"}


def test_usage_header_on_every_graph_answer(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    counts = []
    for _ in range(3):
        resp = g.get(f"{PAGE_ID}/conversations", platform="messenger")
        usage = json.loads(resp.headers["X-Business-Use-Case-Usage"])
        (bucket,) = usage[PAGE_ID]
        assert bucket["type"] == "messenger" and bucket["estimated_time_to_regain_access"] == 0
        counts.append(bucket["call_count"])
    assert 1 <= counts[0] <= counts[1] <= counts[2] < 10  # calls in the last minute, against a notional 1,000 calls/s when unlimited
    err = g.get("t_000")
    assert "X-Business-Use-Case-Usage" in err.headers


def test_meta_calls_per_second_throttle() -> None:
    with Sandbox(seed=7, meta_calls_per_second=2).start() as sb:
        g = Graph(sb)
        statuses = [g.get(f"{PAGE_ID}/conversations", platform="messenger") for _ in range(3)]
        assert [r.status_code for r in statuses[:2]] == [200, 200]
        err = graph_error(statuses[2])
        assert err["code"] == 80006
        usage = json.loads(statuses[2].headers["X-Business-Use-Case-Usage"])[PAGE_ID][0]
        assert usage["estimated_time_to_regain_access"] > 0 and usage["call_count"] >= 100
        ig = [g.get(f"{PAGE_ID}/conversations", platform="instagram") for _ in range(3)]
        assert graph_error(ig[2])["code"] == 80002


def test_meta_call_budget_reaches_100_percent_then_throttles_until_the_window_passes() -> None:
    with Sandbox(seed=7).start() as sb:
        control = requests.post(f"{sb.base_url}/_sandbox/meta_budget", json={"calls": 4, "window_seconds": 600,
                                                                             "used": {"tokoshop-fb": 1}}, timeout=5)
        assert control.status_code == 200
        g = Graph(sb)

        def usage(resp: requests.Response) -> dict[str, Any]:
            return json.loads(resp.headers["X-Business-Use-Case-Usage"])[PAGE_ID][0]

        answers = [g.get(f"{PAGE_ID}/conversations", platform="messenger") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 400]
        assert [usage(r)["call_count"] for r in answers[:3]] == [50, 75, 100]  # one call already spent by "another app"
        err = graph_error(answers[3])
        assert err["code"] == 80006 and usage(answers[3])["estimated_time_to_regain_access"] == 10  # minutes left
        ig = g.get(f"{PAGE_ID}/conversations", platform="instagram")  # the IG account has its own budget
        assert ig.status_code == 200 and json.loads(ig.headers["X-Business-Use-Case-Usage"])
        sb.advance(601)
        again = g.get(f"{PAGE_ID}/conversations", platform="messenger")
        assert again.status_code == 200 and usage(again)["call_count"] == 25
        sb.meta_budget(None)
        assert all(g.get(f"{PAGE_ID}/conversations", platform="messenger").status_code == 200 for _ in range(5))


# ── Graph: Send API ─────────────────────────────────────────────────────────────────────────
def test_send_within_window_appears_as_outbound(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    tid = thread_by_age(sandbox, "tokoshop-fb", 0, 24)
    psid = customer_of(sandbox, "tokoshop-fb", tid)
    resp = g.send(psid, "Halo Kak, pesanan sudah kami cek 🙏", metadata="inbox:reply=42")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"recipient_id", "message_id"} and body["recipient_id"] == psid and body["message_id"].startswith("m_")
    newest = g.get(f"{tid}/messages", fields="id,from,to,message").json()["data"][0]
    assert newest["id"] == body["message_id"] and newest["from"]["id"] == PAGE_ID and newest["to"]["data"][0]["id"] == psid
    conv = g.get(f"{PAGE_ID}/conversations", platform="messenger").json()["data"][0]
    assert conv["id"] == tid
    (sent,) = sandbox.sent("tokoshop-fb")
    assert sent["message_id"] == body["message_id"] and sent["metadata"] == "inbox:reply=42"
    assert sandbox.thread_messages("tokoshop-fb", tid)[-1]["metadata"] == "inbox:reply=42"


def test_send_form_encoded_and_unknown_recipient(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    tid = thread_by_age(sandbox, "tokoshop-ig", 0, 24)
    igsid = customer_of(sandbox, "tokoshop-ig", tid)
    form = {"recipient": json.dumps({"id": igsid}), "messaging_type": "RESPONSE", "message": json.dumps({"text": "Halo!"}),
            "access_token": g.token}
    resp = g.http.post(f"{g.root}/{PAGE_ID}/messages", data=form, timeout=5)
    assert resp.status_code == 200, resp.text
    assert sandbox.sent("tokoshop-ig")[0]["message_id"] == resp.json()["message_id"]
    unknown = g.send("999999999", "halo")
    assert graph_error(unknown)["code"] == 100 and graph_error(unknown)["error_subcode"] == 2018001


@pytest.mark.parametrize("account,subcode", [("tokoshop-fb", 2018278), ("tokoshop-ig", 2534022)])
def test_send_windows(sandbox: Sandbox, account: str, subcode: int) -> None:
    g = Graph(sandbox)
    mid_age = customer_of(sandbox, account, thread_by_age(sandbox, account, 24, 7 * 24))
    old = customer_of(sandbox, account, thread_by_age(sandbox, account, 7 * 24, 60 * 24))
    closed = g.send(mid_age, "Halo Kak")
    assert closed.status_code == 400
    err = graph_error(closed)
    assert (err["code"], err["error_subcode"]) == (10, subcode)
    assert g.send(mid_age, "Halo Kak", "MESSAGE_TAG", "HUMAN_AGENT").status_code == 200
    late = graph_error(g.send(old, "Halo Kak", "MESSAGE_TAG", "HUMAN_AGENT"))
    assert (late["code"], late["error_subcode"]) == (10, subcode)
    assert graph_error(g.send(mid_age, "Halo", "MESSAGE_TAG"))["code"] == 100  # tag missing
    fresh = customer_of(sandbox, account, thread_by_age(sandbox, account, 0, 20))
    assert g.send(fresh, "Halo").status_code == 200
    sandbox.advance(25 * 3600)  # the 24 h window closes as the clock moves
    assert graph_error(g.send(fresh, "Halo lagi"))["error_subcode"] == subcode
    assert len(sandbox.sent(account)) == 2


def test_send_text_limits(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    psid = customer_of(sandbox, "tokoshop-fb", thread_by_age(sandbox, "tokoshop-fb", 0, 24))
    assert g.send(psid, "a" * 2000).status_code == 200
    assert graph_error(g.send(psid, "a" * 2001))["code"] == 100
    igsid = customer_of(sandbox, "tokoshop-ig", thread_by_age(sandbox, "tokoshop-ig", 0, 24))
    assert g.send(igsid, "é" * 500).status_code == 200  # 1,000 bytes
    over = g.send(igsid, "é" * 501)  # 501 characters but 1,002 bytes
    assert over.status_code == 400 and graph_error(over)["code"] == 100
    assert len(sandbox.sent("tokoshop-fb")) == 1 and len(sandbox.sent("tokoshop-ig")) == 1


def test_send_instagram_login(sandbox: Sandbox) -> None:
    g = Graph(sandbox, host="instagram")
    tid = thread_by_age(sandbox, "tokoshop-ig-direct", 0, 24)
    resp = g.send(customer_of(sandbox, "tokoshop-ig-direct", tid), "Hai kak", node=IG_DIRECT_ID)
    assert resp.status_code == 200
    assert g.get(f"{tid}/messages", fields="id,from").json()["data"][0] == {"id": resp.json()["message_id"], "from": {"username": "tokoshop.id", "id": IG_DIRECT_ID}}


# ── X ──────────────────────────────────────────────────────────────────────────────────────
def test_dm_events_default_and_requested_fields(sandbox: Sandbox) -> None:
    x = X(sandbox)
    plain = x.get("2/dm_events", max_results=5).json()
    assert all(set(e) == {"id", "event_type", "text"} for e in plain["data"])
    full = x.get("2/dm_events", max_results=20, expansions="sender_id,attachments.media_keys", **FULL,
                 **{"user.fields": "username,name", "media.fields": "url,type"}).json()
    events = full["data"]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids, reverse=True)
    for e in events:
        assert {"id", "event_type", "text", "created_at", "dm_conversation_id", "sender_id"} <= set(e)
        assert X_TIME.match(e["created_at"])
        stamp = datetime.strptime(e["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert (int(e["id"]) >> 22) + 1288834974657 == int(stamp.timestamp() * 1000)  # snowflake agrees
        assert X_ME in e["dm_conversation_id"].split("-")
    users = {u["id"]: u for u in full["includes"]["users"]}
    assert {e["sender_id"] for e in events} == set(users) and users[X_ME]["username"] == "TokoShopCare"
    keys = {k for e in events for k in e.get("attachments", {}).get("media_keys", [])}
    assert keys and keys == {m["media_key"] for m in full["includes"]["media"]}
    assert full["meta"]["result_count"] == len(events)


def test_dm_events_paging_and_thirty_day_window(sandbox: Sandbox) -> None:
    x = X(sandbox)
    seen: list[str] = []
    token = None
    calls = 0
    while True:
        params: dict[str, Any] = {"max_results": 4, **FULL}
        if token:
            params["pagination_token"] = token
        body = x.get("2/dm_events", **params).json()
        calls += 1
        seen += [e["id"] for e in body.get("data", [])]
        token = body["meta"].get("next_token")
        if not token:
            break
        assert len(token) >= 16
    assert len(seen) == len(set(seen)) and calls > 2
    cutoff = (sandbox.now() - 30 * DAY) * 1000
    within = {m for m in sandbox.all_message_ids("tokoshop-x") if (int(m) >> 22) + 1288834974657 > cutoff}
    assert set(seen) == within and len(within) < len(sandbox.all_message_ids("tokoshop-x"))
    assert [int(i) for i in seen] == sorted((int(i) for i in seen), reverse=True)
    newest = x.get("2/dm_events", max_results=4).json()["meta"]["previous_token"]
    assert x.get("2/dm_events", pagination_token=newest).json() == {"meta": {"result_count": 0}}  # nothing newer yet
    sandbox.inject("tokoshop-x", text="Halo min, ada update?")
    assert x.get("2/dm_events", pagination_token=newest).json()["meta"]["result_count"] == 1


def test_x_empty_page_and_invalid_requests(sandbox: Sandbox) -> None:
    x = X(sandbox)
    empty = x.get("2/dm_conversations/with/123456/dm_events")
    assert empty.status_code == 200 and empty.content == b'{"meta":{"result_count":0}}'
    for bad in ("500", "0", "abc"):
        resp = x.get("2/dm_events", max_results=bad)
        assert resp.status_code == 400
        body = resp.json()
        assert body["type"].endswith("/problems/invalid-request") and body["errors"][0]["parameters"] == {"max_results": [bad]}
    assert x.get("2/dm_events", **{"dm_event.fields": "id,bogus"}).status_code == 400
    assert x.get("2/dm_events", pagination_token="short").status_code == 400
    assert x.get("2/dm_events", since_id="1").status_code == 400  # no since_id on DM lookups


def test_x_per_conversation_lookups(sandbox: Sandbox) -> None:
    x = X(sandbox)
    conv = sandbox.threads("tokoshop-x")[0]
    other = next(p for p in conv.split("-") if p != X_ME)
    by_id = x.get(f"2/dm_conversations/{conv}/dm_events", **FULL).json()
    by_user = x.get(f"2/dm_conversations/with/{other}/dm_events", **FULL).json()
    assert by_id == by_user
    assert {e["dm_conversation_id"] for e in by_id["data"]} == {conv}
    assert [e["id"] for e in by_id["data"]] == [m["id"] for m in reversed(sandbox.thread_messages("tokoshop-x", conv))]


def test_x_send_and_echo(sandbox: Sandbox) -> None:
    x = X(sandbox)
    conv = sandbox.threads("tokoshop-x")[0]
    other = next(p for p in conv.split("-") if p != X_ME)
    resp = x.post(f"2/dm_conversations/with/{other}/messages", {"text": "Halo Kak, sudah kami proses 🙏"})
    assert resp.status_code == 201
    data = resp.json()["data"]
    assert set(data) == {"dm_conversation_id", "dm_event_id"} and data["dm_conversation_id"] == conv
    assert "x-rate-limit-remaining" in resp.headers
    newest = x.get("2/dm_events", max_results=1, **FULL).json()["data"][0]
    assert newest["id"] == data["dm_event_id"] and newest["sender_id"] == X_ME
    again = x.post(f"2/dm_conversations/{conv}/messages", {"text": "Ada lagi yang bisa dibantu?"})
    assert again.status_code == 201
    assert [s["dm_event_id"] for s in sandbox.sent("tokoshop-x")] == [data["dm_event_id"], again.json()["data"]["dm_event_id"]]
    assert x.post(f"2/dm_conversations/with/{other}/messages", {"text": "a" * 10_001}).status_code == 400
    assert x.post(f"2/dm_conversations/with/{other}/messages", {"text": "a" * 10_000}).status_code == 201
    assert x.post(f"2/dm_conversations/with/{other}/messages", {}).status_code == 400


def test_x_single_event_and_group_conversation(sandbox: Sandbox) -> None:
    x = X(sandbox)
    newest = x.get("2/dm_events", max_results=1, **FULL).json()["data"][0]
    assert x.get(f"2/dm_events/{newest['id']}", **FULL).json() == {"data": newest}
    missing = x.get("2/dm_events/123")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/problems/resource-not-found")
    created = x.post("2/dm_conversations", {"conversation_type": "Group", "participant_ids": ["944480690", "2244994945"],
                                            "message": {"text": "Halo semua, ini grup untuk klaim garansi"}})
    assert created.status_code == 201
    data = created.json()["data"]
    assert "-" not in data["dm_conversation_id"] and 15 <= len(data["dm_conversation_id"]) <= 19
    events = x.get(f"2/dm_conversations/{data['dm_conversation_id']}/dm_events", **FULL).json()["data"]
    assert [e["id"] for e in events] == [data["dm_event_id"]] and events[0]["sender_id"] == X_ME
    assert x.post("2/dm_conversations", {"conversation_type": "group", "participant_ids": ["1"]}).status_code == 400


def test_x_rate_limit_budget_and_reset() -> None:
    with Sandbox(seed=7, x_rate_limit=3, x_window_seconds=60).start() as sb:
        x = X(sb)
        got = [x.get("2/dm_events", max_results=1) for _ in range(4)]
        assert [r.status_code for r in got] == [200, 200, 200, 429]
        assert [r.headers["x-rate-limit-remaining"] for r in got] == ["2", "1", "0", "0"]
        assert all(r.headers["x-rate-limit-limit"] == "3" for r in got)
        reset = int(got[3].headers["x-rate-limit-reset"])
        assert sb.now() < reset <= sb.now() + 61
        assert got[3].json() == {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}
        # Budgets are per endpoint: the per-conversation lookup still has its own.
        assert x.get(f"2/dm_conversations/{sb.threads('tokoshop-x')[0]}/dm_events").status_code == 200
        sb.advance(61)
        assert x.get("2/dm_events", max_results=1).status_code == 200


def test_x_auth(sandbox: Sandbox) -> None:
    url = f"{sandbox.base_url}/x/2/dm_events"
    bad = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["status"] == 401 and "x-rate-limit-reset" in bad.headers
    env = sandbox.env()
    oauth1 = (f'OAuth oauth_consumer_key="{env["INBOX_SANDBOX_X_CONSUMER_KEY"]}", oauth_nonce="abc", '
              f'oauth_signature="unchecked%3D", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1700000000", '
              f'oauth_token="{env["INBOX_SANDBOX_X_ACCESS_TOKEN"]}", oauth_version="1.0"')
    assert requests.get(url, headers={"Authorization": oauth1}, timeout=5).status_code == 200
    assert requests.get(url, headers={"Authorization": oauth1.replace("SandboxConsumer", "Other")}, timeout=5).status_code == 401


# ── faults ─────────────────────────────────────────────────────────────────────────────────
def test_error_faults_graph_and_x(sandbox: Sandbox) -> None:
    g, x = Graph(sandbox), X(sandbox)
    sandbox.fault("500", path="/conversations")
    resp = g.get(f"{PAGE_ID}/conversations")
    assert resp.status_code == 500 and graph_error(resp)["is_transient"] is True
    assert g.get(f"{PAGE_ID}/conversations").status_code == 200  # count=1: used up
    sandbox.fault("expired_token", account="tokoshop-ig")
    assert g.get(f"{PAGE_ID}/conversations", platform="messenger").status_code == 200  # other account unaffected
    err = graph_error(g.get(f"{PAGE_ID}/conversations", platform="instagram"))
    assert (err["code"], err["error_subcode"]) == (190, 463)
    sandbox.fault("429", path="/conversations", count=2)
    for _ in range(2):
        limited = g.get(f"{PAGE_ID}/conversations")
        assert graph_error(limited)["code"] in (4, 32, 80002, 80006)
        assert json.loads(limited.headers["X-Business-Use-Case-Usage"])[PAGE_ID][0]["estimated_time_to_regain_access"] > 0
    sandbox.fault("503", path="/2/dm_events")
    assert x.get("2/dm_events").status_code == 503
    sandbox.fault("429", path="/2/dm_events")
    limited = x.get("2/dm_events")
    assert limited.status_code == 429 and limited.headers["x-rate-limit-remaining"] == "0" and "x-rate-limit-reset" in limited.headers
    sandbox.fault("expired_token", path="/2/dm_events")
    assert x.get("2/dm_events").status_code == 401
    sandbox.fault("500", path="/conversations", count=5)
    sandbox.clear_faults()
    assert g.get(f"{PAGE_ID}/conversations").status_code == 200


def test_body_faults(sandbox: Sandbox) -> None:
    g, x = Graph(sandbox), X(sandbox)
    for kind in ("malformed", "truncated"):
        sandbox.fault(kind, path="/conversations")
        resp = g.get(f"{PAGE_ID}/conversations")
        assert resp.status_code == 200
        with pytest.raises(ValueError):
            resp.json()
    sandbox.fault("cut", path="/2/dm_events")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        x.get("2/dm_events")
    assert x.get("2/dm_events").status_code == 200
    sandbox.fault("bad_item", path="/messages")
    tid = sandbox.threads("tokoshop-fb")[0]
    data = g.get(f"{tid}/messages", fields="id,created_time,from,message").json()["data"]
    broken = [m for m in data if "created_time" not in m]
    assert len(broken) == 1 and broken[0]["id"] and len(data) > 1
    sandbox.fault("bad_item", path="/2/dm_events")
    events = x.get("2/dm_events", max_results=5, **FULL).json()["data"]
    assert sum("created_at" not in e for e in events) == 1


def test_loop_fault_points_a_page_back_at_itself(sandbox: Sandbox) -> None:
    g, x = Graph(sandbox), X(sandbox)
    sandbox.fault("loop", path="/conversations", count=2)
    first = g.get(f"{PAGE_ID}/conversations", limit=1).json()
    assert "after=" in first["paging"]["next"]  # a first page keeps its link
    second = g.http.get(first["paging"]["next"], timeout=5).json()
    assert second["paging"]["next"].split("?")[0] == first["paging"]["next"].split("?")[0]
    assert g.http.get(second["paging"]["next"], timeout=5).json()["data"] == second["data"]
    sandbox.fault("loop", path="/2/dm_events", count=2)
    token = x.get("2/dm_events", max_results=2).json()["meta"]["next_token"]
    assert x.get("2/dm_events", max_results=2, pagination_token=token).json()["meta"]["next_token"] == token


def test_drop_and_timeout(sandbox: Sandbox) -> None:
    g, x = Graph(sandbox), X(sandbox)
    sandbox.fault("drop", path="/2/dm_events")
    with pytest.raises(requests.ConnectionError):
        x.get("2/dm_events")
    assert sandbox.calls[-1].status == 0
    sandbox.fault("timeout", path="/conversations")
    with pytest.raises(requests.Timeout):
        g.http.get(f"{g.root}/{PAGE_ID}/conversations", params={"access_token": g.token}, timeout=0.3)


def test_send_outcome_unknown_is_still_recorded(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    psid = customer_of(sandbox, "tokoshop-fb", thread_by_age(sandbox, "tokoshop-fb", 0, 24))
    sandbox.fault("timeout", path="/messages")
    with pytest.raises(requests.Timeout):
        g.http.post(f"{g.root}/me/messages", params={"access_token": g.token}, timeout=0.3,
                    json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": "satu"}})
    assert [s["text"] for s in sandbox.sent("tokoshop-fb")] == ["satu"]
    sandbox.fault("drop", path="/messages", after_effect=True)
    with pytest.raises(requests.ConnectionError):
        g.send(psid, "dua")
    sandbox.fault("drop", path="/messages")
    with pytest.raises(requests.ConnectionError):
        g.send(psid, "tiga")  # dropped before it was carried out
    sandbox.fault("500", path="/messages", after_effect=True)
    assert g.send(psid, "empat").status_code == 500
    assert [s["text"] for s in sandbox.sent("tokoshop-fb")] == ["satu", "dua", "empat"]
    x = X(sandbox)
    conv = sandbox.threads("tokoshop-x")[0]
    sandbox.fault("timeout", path="/messages", account="tokoshop-x")
    with pytest.raises(requests.Timeout):
        x.http.post(f"{x.root}/2/dm_conversations/{conv}/messages", json={"text": "lima"}, timeout=0.3)
    assert [s["text"] for s in sandbox.sent("tokoshop-x")] == ["lima"]


# ── switches, control API, call log ─────────────────────────────────────────────────────────
def test_inject_and_burst(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    mid = sandbox.inject("tokoshop-ig", text="Kak, paket saya INV/20261125/MPL/1234567890 belum datang", customer="baru.pelanggan",
                         attachments=[{"type": "image"}])
    conv = g.get(f"{PAGE_ID}/conversations", platform="instagram", fields="id,participants").json()["data"][0]
    assert "baru.pelanggan" in {p["username"] for p in conv["participants"]["data"]}
    newest = g.get(f"{conv['id']}/messages", fields="id,message,attachments").json()["data"][0]
    assert newest["id"] == mid and newest["attachments"]["data"][0]["mime_type"] == "image/jpeg"
    tid = sandbox.threads("tokoshop-fb")[5]
    before = set(m["id"] for m in g.get(f"{tid}/messages").json()["data"])
    ids = sandbox.burst("tokoshop-fb", tid, 25)
    readable = [m["id"] for m in g.get(f"{tid}/messages", limit=100).json()["data"]]
    assert readable == list(reversed(ids))[:20] and not before & set(readable)
    assert set(ids) <= sandbox.all_message_ids("tokoshop-fb")
    event = sandbox.inject("tokoshop-x", text="Halo min")
    assert X(sandbox).get("2/dm_events", max_results=1).json()["data"][0]["id"] == event


def test_control_endpoints(sandbox: Sandbox) -> None:
    base = f"{sandbox.base_url}/_sandbox"
    http = requests.Session()
    mid = http.post(f"{base}/inject", json={"account": "tokoshop-fb", "text": "Halo dari luar proses"}, timeout=5).json()["id"]
    tid = sandbox.threads("tokoshop-fb")[0]
    assert sandbox.thread_messages("tokoshop-fb", tid)[-1]["id"] == mid
    ids = http.post(f"{base}/burst", json={"account": "tokoshop-fb", "thread": tid, "n": 3}, timeout=5).json()["ids"]
    assert len(ids) == 3
    assert http.post(f"{base}/fault", json={"kind": "503", "path": "/conversations"}, timeout=5).status_code == 200
    g = Graph(sandbox)
    assert g.get(f"{PAGE_ID}/conversations").status_code == 503
    http.post(f"{base}/fault", json={"kind": "503"}, timeout=5)
    http.post(f"{base}/clear_faults", timeout=5)
    assert g.get(f"{PAGE_ID}/conversations", limit=2).status_code == 200
    calls = http.get(f"{base}/calls", timeout=5).json()
    assert [(c["method"], c["status"], c["account"]) for c in calls] == [("GET", 503, "tokoshop-fb"), ("GET", 200, "tokoshop-fb")]
    assert calls[1]["query"]["limit"] == "2" and calls[1]["path"] == f"/facebook/v23.0/{PAGE_ID}/conversations"
    g.send(customer_of(sandbox, "tokoshop-fb", tid), "Baik Kak")
    assert [s["text"] for s in http.get(f"{base}/sent", params={"account": "tokoshop-fb"}, timeout=5).json()] == ["Baik Kak"]
    before = time.time()
    now = http.post(f"{base}/advance", json={"seconds": 3600}, timeout=5).json()["now"]
    assert before + 3600 <= now <= sandbox.now()  # the clock moved an hour ahead, and stays there
    assert http.post(f"{base}/fault", json={"kind": "nope"}, timeout=5).status_code == 400
    assert http.post(f"{base}/inject", json={"account": "nope", "text": "x"}, timeout=5).status_code == 400



@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},  # a page in the tester's browser posting cross-origin
    {"Origin": "null"},  # a sandboxed iframe or a file:// page
    {"Host": "evil.example"},  # DNS rebinding: evil.example resolved to 127.0.0.1
    {"Host": "10.0.0.5:8000"},
])
def test_control_endpoints_refuse_other_hosts_and_origins(sandbox: Sandbox, headers: dict[str, str]) -> None:
    base = f"{sandbox.base_url}/_sandbox"
    before = len(sandbox.threads("tokoshop-fb"))
    res = requests.post(f"{base}/inject", json={"account": "tokoshop-fb", "text": "dari web"}, headers=headers, timeout=5)
    assert res.status_code == 403 and "forbidden" in res.json()["error"]
    assert requests.post(f"{base}/fault", json={"kind": "503"}, headers=headers, timeout=5).status_code == 403
    assert requests.get(f"{base}/sent", params={"account": "tokoshop-fb"}, headers=headers, timeout=5).status_code == 403
    assert len(sandbox.threads("tokoshop-fb")) == before and sandbox.faults.take("GET", "/conversations", "tokoshop-fb") is None
    # The same request from this machine (a loopback Host, a loopback Origin or none) is served.
    port = sandbox.base_url.rsplit(":", 1)[1]
    for ok in ({}, {"Origin": f"http://127.0.0.1:{port}"}, {"Host": f"localhost:{port}"}, {"Host": f"[::1]:{port}"}):
        assert requests.get(f"{base}/sent", params={"account": "tokoshop-fb"}, headers=ok, timeout=5).status_code == 200, ok

def test_call_log(sandbox: Sandbox) -> None:
    g, x = Graph(sandbox), X(sandbox)
    g.get(f"{PAGE_ID}/conversations", platform="instagram")
    x.get("2/dm_events", max_results=2)
    calls = sandbox.calls
    assert [(c.method, c.account, c.status) for c in calls] == [("GET", "tokoshop-ig", 200), ("GET", "tokoshop-x", 200)]
    assert calls[0].query["platform"] == "instagram" and calls[1].path == "/x/2/dm_events"
    sandbox.clear_calls()
    assert sandbox.calls == []


def test_config_and_env_load_as_inbox_settings(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from inbox.settings import load_settings

    path = tmp_path / "inbox.toml"
    path.write_text(sandbox.config_toml(database=f"sqlite:///{tmp_path / 'inbox.db'}", include_ig_login=True), encoding="utf-8")
    settings = load_settings(path)
    assert [a.name for a in settings.accounts] == ["tokoshop-fb", "tokoshop-ig", "tokoshop-x", "tokoshop-ig-direct"]
    for acc in settings.accounts:
        spec = acc.to_spec()  # the fixture exported the token variables
        assert spec.base_url == sandbox.accounts[acc.name].base_url and spec.base_url.startswith(sandbox.base_url)
        assert spec.secrets["access_token"] == sandbox.accounts[acc.name].token


def test_cli_serve_writes_config_and_stops_on_ctrl_c(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.waiting import interrupt
    import subprocess
    import sys

    config = tmp_path / "sandbox.toml"
    proc = subprocess.Popen([sys.executable, "-c", "import cli, sys; sys.exit(cli.main())", "sandbox", "serve", "--port", "0",
                             "--write-config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        while not lines or "Ctrl-C" not in lines[-1]:  # read the banner line by line (communicate() would lose buffered text)
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "serve exited early"
            lines.append(line)
        first = "".join(lines)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        assert match, first
        base = match.group(1)
        resp = requests.get(f"{base}/x/2/dm_events", headers={"Authorization": "Bearer " + Sandbox().env()["INBOX_SANDBOX_X_TOKEN"]}, timeout=5)
        assert resp.status_code == 200
        assert f'base_url = "{base}/x"' in config.read_text()
    finally:
        rest, err = interrupt(proc)
    out = first + rest
    assert proc.returncode == 0, err
    assert "export INBOX_SANDBOX_FB_TOKEN=" in out and str(config) in out and "sandbox stopped" in err


# ── conformance with the reference payloads ────────────────────────────────────────────────
def _reference(name: str) -> Any:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference payload {path} not present")
    return json.loads(path.read_text(encoding="utf-8"))


def _keys_at_least(reference: Any, ours: Any, where: str = "$") -> None:
    """Every key the reference shows is present in ours, with the same JSON type, recursively."""
    if isinstance(reference, dict):
        assert isinstance(ours, dict), f"{where}: expected an object, got {ours!r}"
        for key, value in reference.items():
            assert key in ours, f"{where}: missing {key!r}"
            _keys_at_least(value, ours[key], f"{where}.{key}")
    elif isinstance(reference, list):
        assert isinstance(ours, list) and ours, f"{where}: expected a non-empty list"
        _keys_at_least(reference[0], ours[0], f"{where}[0]")
    else:
        assert type(ours) is type(reference) or {type(ours), type(reference)} <= {int, float}, f"{where}: {ours!r} vs {reference!r}"


def test_graph_shapes_match_reference_payloads(sandbox: Sandbox) -> None:
    g = Graph(sandbox)
    listing = g.get(f"{PAGE_ID}/conversations", platform="instagram", fields="id,updated_time,participants", limit=2).json()
    _keys_at_least(_reference("meta_conversations_list_paginated.json"), listing)
    reference = _reference("meta_conversation_messages_messenger.json")
    fields = "messages.limit(20){id,created_time,from,to,message,attachments}"
    messages = [m for t in sandbox.threads("tokoshop-fb") for m in g.get(t, fields=fields).json()["messages"]["data"]]
    text_ref, image_ref = reference["messages"]["data"]
    _keys_at_least(text_ref, next(m for m in messages if "message" in m))
    _keys_at_least(image_ref, next(m for m in messages if "message" in m and "image_data" in m.get("attachments", {}).get("data", [{}])[0]))
    tid = sandbox.threads("tokoshop-fb")[0]
    node = g.get(tid, fields="messages.limit(1){id}").json()
    _keys_at_least({"id": reference["id"], "messages": {"paging": reference["messages"]["paging"]}}, node)
    story = next(m["id"] for t in sandbox.threads("tokoshop-ig") for m in sandbox.thread_messages("tokoshop-ig", t)
                 if m["story"] and "reply_to" in m["story"])
    detail = g.get(story, fields="id,created_time,from,to,message,story,reactions,is_unsupported").json()
    detail_ref = _reference("meta_message_detail_instagram_story_reply.json")
    _keys_at_least({k: v for k, v in detail_ref.items() if k != "reactions"}, detail)
    psid = customer_of(sandbox, "tokoshop-fb", thread_by_age(sandbox, "tokoshop-fb", 0, 24))
    sent = g.send(psid, "Halo Kak").json()
    assert set(sent) == set(_reference("meta_send_api_response.json"))
    closed = g.send(customer_of(sandbox, "tokoshop-fb", thread_by_age(sandbox, "tokoshop-fb", 24, 7 * 24)), "Halo")
    ref_err = _reference("meta_error_outside_window.json")
    _keys_at_least(ref_err, closed.json())
    assert closed.json()["error"]["message"] == ref_err["error"]["message"]
    sandbox.fault("expired_token")
    _keys_at_least(_reference("meta_error_token_expired.json"), g.get("me").json())


def test_x_shapes_match_reference_payloads(sandbox: Sandbox) -> None:
    x = X(sandbox)
    params = {"dm_event.fields": "id,text,event_type,created_at,dm_conversation_id,sender_id,attachments",
              "expansions": "sender_id,attachments.media_keys", "user.fields": "username,name", "media.fields": "url,type"}
    reference = _reference("x_dm_events_paginated.json")
    pages = [x.get("2/dm_events", max_results=3, **params).json()]
    while pages[-1]["meta"].get("next_token"):
        pages.append(x.get("2/dm_events", max_results=3, pagination_token=pages[-1]["meta"]["next_token"], **params).json())
    events = [e for p in pages for e in p["data"]]
    for ref_event in reference["data"]:
        _keys_at_least(ref_event, next(e for e in events if ("attachments" in e) == ("attachments" in ref_event)))
    _keys_at_least(reference["includes"]["users"], pages[0]["includes"]["users"])
    with_media = next(p for p in pages if "media" in p.get("includes", {}))
    _keys_at_least(reference["includes"]["media"], with_media["includes"]["media"])
    _keys_at_least(reference["meta"], pages[1]["meta"])  # a middle page has next_token and previous_token
    conv = sandbox.threads("tokoshop-x")[0]
    created = x.post(f"2/dm_conversations/{conv}/messages", {"text": "Halo"})
    assert created.status_code == 201 and set(created.json()["data"]) == set(_reference("x_create_dm_response.json")["data"])
    assert x.get("2/dm_events", max_results=500).json() == _reference("x_error_400_invalid_request.json")
    sandbox.fault("429", path="/2/dm_events")
    assert x.get("2/dm_events").json() == _reference("x_error_429_too_many_requests.json")


# ── seed data ──────────────────────────────────────────────────────────────────────────────
def test_seed_is_deterministic() -> None:
    a, b, c = Sandbox(seed=7), Sandbox(seed=7), Sandbox(seed=8)
    for acc in ("tokoshop-fb", "tokoshop-ig", "tokoshop-ig-direct"):
        assert a.threads(acc) == b.threads(acc)
        assert [m["text"] for t in a.threads(acc) for m in a.thread_messages(acc, t)] == \
               [m["text"] for t in b.threads(acc) for m in b.thread_messages(acc, t)]
    assert a.all_message_ids("tokoshop-fb") == b.all_message_ids("tokoshop-fb")
    assert a.all_message_ids("tokoshop-fb") != c.all_message_ids("tokoshop-fb")


def test_seed_scenarios(sandbox: Sandbox) -> None:
    texts: dict[str, list[tuple[str, int]]] = {}
    for acc in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x", "tokoshop-ig-direct"):
        texts[acc] = [(m["text"] or "", m["created_ms"]) for t in sandbox.threads(acc) for m in sandbox.thread_messages(acc, t)]
    invoices = {acc: {i for t, _ in items for i in INVOICE.findall(t)} for acc, items in texts.items()}
    assert all(invoices.values())
    assert invoices["tokoshop-ig"] & invoices["tokoshop-x"]  # one customer on two channels, same invoice
    long_fb = {t: ms for t, ms in texts["tokoshop-fb"] if len(t) > 400}
    pasted = [(t, ms) for t, ms in texts["tokoshop-ig"] if t in long_fb]
    assert pasted and abs(pasted[0][1] - long_fb[pasted[0][0]]) < 3600_000  # same complaint within the hour
    everything = " ".join(t for items in texts.values() for t, _ in items)
    for word in ("refund", "batalkan", "diblokir", "penipuan", "saldo", "seller", "Seller", "cancel"):
        assert word in everything
    assert re.search(r"[\U0001F300-\U0001FAFF]", everything)  # emoji
    names = [p["name"] for t in sandbox.threads("tokoshop-fb")
             for p in Graph(sandbox).get(t, fields="participants").json()["participants"]["data"]]
    assert any(re.search(r"[^\x00-\u024f]", n) for n in names)  # a name in a non-Latin script too
    for acc in ("tokoshop-fb", "tokoshop-ig"):
        for lo, hi in ((0, 24), (24, 7 * 24), (7 * 24, 60 * 24)):
            thread_by_age(sandbox, acc, lo, hi)


# ── large dataset ──────────────────────────────────────────────────────────────────────────
@pytest.mark.slow
def test_large_dataset_builds_and_pages_completely() -> None:
    """Every generated message can be paged through (speed: bench/sandbox_large.py)."""
    sb = Sandbox(seed=3, large=100_000, x_rate_limit=10_000)
    total = sum(len(sb.all_message_ids(a)) for a in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"))
    assert total >= 100_000
    with sb.start():
        g = Graph(sb)
        items = walk_conversations(g, PAGE_ID, platform="messenger", limit=100)
        assert [c["id"] for c in items] == sb.threads("tokoshop-fb")
        x = X(sb)
        seen = 0
        token = None
        while True:
            params: dict[str, Any] = {"max_results": 100}
            if token:
                params["pagination_token"] = token
            body = x.get("2/dm_events", **params).json()
            seen += body["meta"]["result_count"]
            token = body["meta"].get("next_token")
            if not token:
                break
        assert seen >= 29_000
    assert Sandbox(seed=3, large=2000).all_message_ids("tokoshop-fb") == Sandbox(seed=3, large=2000).all_message_ids("tokoshop-fb")


def test_late_send_is_delivered_and_shown_only_after_the_delay(tmp_path: Any) -> None:
    """`late`: the send is accepted, the client gives up, and only then does the message reach the
    customer and appear in the thread; deliveries are counted per recipient and text."""
    with Sandbox(seed=7, late_sleep=1.5) as sb:
        g = Graph(sb)
        tid = thread_by_age(sb, "tokoshop-fb", 0, 24)
        psid = customer_of(sb, "tokoshop-fb", tid)
        sb.fault("late", path="/messages", account="tokoshop-fb")
        with pytest.raises(requests.Timeout):
            g.http.post(f"{g.root}/me/messages", params={"access_token": g.token}, timeout=0.3,
                        json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": "Halo, terlambat"}})
        assert sb.sent("tokoshop-fb") == [] and sb.thread_messages("tokoshop-fb", tid)[-1]["text"] != "Halo, terlambat"
        assert sb.wait_late(10)
        assert sb.thread_messages("tokoshop-fb", tid)[-1]["text"] == "Halo, terlambat"
        assert g.send(psid, "Halo, terlambat").status_code == 200  # the same text again: a second delivery
        assert sb.deliveries("tokoshop-fb") == {("tokoshop-fb", psid, "Halo, terlambat"): 2}
        x = sb.threads("tokoshop-x")[0]
        customer = next(p for p in x.split("-") if p != "1500000000000000001")
        resp = requests.post(f"{sb.base_url}/x/2/dm_conversations/{x}/messages", json={"text": "halo x"},
                             headers={"Authorization": f"Bearer {sb.accounts['tokoshop-x'].token}"}, timeout=5)
        assert resp.status_code == 201, resp.text
        assert sb.deliveries()[("tokoshop-x", customer, "halo x")] == 1


def test_late_requests_record_arrival_delay_and_when_they_were_carried_out() -> None:
    """Each late request is recorded: when it arrived, how long it was to wait, when it was carried
    out (after its delay, or earlier by release_late), and the message a send created; the call log
    names the fault of each call. The same record is served by the control API."""
    with Sandbox(seed=7, late_sleep=30) as sb:
        g = Graph(sb)
        psid = customer_of(sb, "tokoshop-fb", thread_by_age(sb, "tokoshop-fb", 0, 24))
        sb.fault("late", path="/messages", account="tokoshop-fb", delay=0.4)
        sb.fault("late", path="/messages", account="tokoshop-fb")  # waits late_sleep: released below
        for text in ("Halo, sebentar", "Halo, ditahan"):
            with pytest.raises(requests.Timeout):
                g.http.post(f"{g.root}/me/messages", params={"access_token": g.token}, timeout=0.2,
                            json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": text}})
        deadline = time.monotonic() + 10
        while sb.late_requests[0].carried_out is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first, second = sb.late_requests
        assert second.carried_out is None and second.delay == 30 and not second.released
        sb.release_late()
        assert sb.wait_late(10)
        first, second = sb.late_requests
        sent = {s["message_id"]: s for s in sb.sent("tokoshop-fb")}
        assert first.delay == 0.4 and not first.released and first.carried_out >= first.arrived + 0.4
        assert second.released and second.carried_out < second.arrived + 30
        assert [sent[r.message_id]["text"] for r in (first, second)] == ["Halo, sebentar", "Halo, ditahan"]
        assert all(r.status == 200 and r.account == "tokoshop-fb" and r.method == "POST" for r in (first, second))
        assert [c.fault for c in sb.calls if c.method == "POST"] == ["late", "late"]
        assert all(c.fault is None for c in sb.calls if c.method == "GET")
        served = requests.get(f"{sb.base_url}/_sandbox/late", timeout=5).json()
        assert [r["message_id"] for r in served] == [first.message_id, second.message_id]
        assert served[0]["carried_out"] == first.carried_out
        sb.clear_calls()
        assert sb.late_requests == [] and sb.calls == []
