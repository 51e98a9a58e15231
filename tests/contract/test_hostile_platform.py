"""The platform behaving as real platforms do and emulators often do not, over real HTTP.

Each case names a platform behaviour (paging links on the platform's public host, links that point
somewhere else, ...), makes the sandbox behave so, and asserts that the account keeps going: every
reachable message stored once, the cursor not past unsaved data, no token on the wire where it
should not be.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from tests.contract.test_connectors_contract import META, Store, drain, make_spec, open_connector, reachable_ids

TOKEN_PARAM = "access_token"


@pytest.fixture
def sb() -> Iterator[Any]:
    box = Sandbox(seed=7, x_rate_limit=10_000, timeout_sleep=1.5)
    box.start(host="127.0.0.1", port=0)
    try:
        yield box
    finally:
        box.stop()


@pytest.mark.parametrize("name", META)
@pytest.mark.parametrize("cut", [None, 2])
def test_paging_links_on_the_platforms_public_host_are_followed_on_the_base_url(sb: Any, name: str, cut: int | None) -> None:
    """Real Graph writes `paging.next` as https://graph.facebook.com/vNN.0/...: the client follows it
    under its own base URL (a proxy's or an emulator's path prefix included), never on that host."""
    sb.public_links()
    if cut is not None:
        sb.cut_nested(cut)  # the nested edges' `next` links are read on too
    sb.clear_calls()
    messages, pages, _cursor = drain(open_connector(sb, name, page_size=1), None, Store())
    ids = [m.external_id for m in messages]
    assert set(ids) == reachable_ids(sb, name)
    assert len(ids) == len(set(ids))
    assert not any(p.quarantined for p in pages), [q.reason for p in pages for q in p.quarantined]
    calls = [c for c in sb.calls if c.method == "GET"]
    prefix = make_spec(sb, name).base_url.removeprefix(sb.base_url)
    assert len(calls) > 1 and all(c.path.startswith(prefix + "/") and c.status == 200 for c in calls), [
        (c.path, c.status) for c in calls if not c.path.startswith(prefix + "/") or c.status != 200
    ]
    assert not any(TOKEN_PARAM in c.query for c in calls)


@pytest.mark.parametrize(("link", "expected"), [
    ("https://graph.facebook.com/v23.0/t_1/messages?after=QQ&access_token=SECRET", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://evil.example/v19.0/t_1/messages?after=QQ&ACCESS_TOKEN=SECRET", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("https://graph.facebook.com/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/proxy/graph/v23.0/t_1/messages?after=QQ", "/proxy/graph/v23.0/t_1/messages?after=QQ"),
    ("http://127.0.0.1:9/v23.0/t_1/messages", "/proxy/graph/v23.0/t_1/messages"),
])
def test_a_paging_link_is_followed_under_the_base_url_without_its_token(link: str, expected: str) -> None:
    from connectors.base import AccountSpec
    from connectors.enums import Channel
    from connectors.graph_client import GraphClient

    spec = AccountSpec(name="a", channel=Channel.FACEBOOK, account_id="1", base_url="http://127.0.0.1:9/proxy/graph/v23.0",
                       secrets={"access_token": "SECRET"})
    client = GraphClient(spec)
    try:
        assert client.url(link) == "http://127.0.0.1:9" + expected
    finally:
        client.close()


# ── webhook bodies ─────────────────────────────────────────────────────────────────────────────

RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "recorded"
X_MEDIA = RECORDED / "zammad" / "twitter_webhook_events" / "direct_message-incoming_with_media.json"


@pytest.mark.skipif(not X_MEDIA.is_file(), reason=f"recorded fixture not present at {X_MEDIA}")
@pytest.mark.parametrize("variants", [
    [{"bitrate": "832000", "url": "https://video.example/a.mp4"}, {"bitrate": 0, "url": "https://video.example/b.mp4"}],
    [{"bitrate": {"kbps": 1}, "url": "https://video.example/a.mp4"}, {"bitrate": 5, "url": "https://video.example/b.mp4"}],
    [{"bitrate": None, "url": "https://video.example/a.mp4"}, {"bitrate": [1], "url": "https://video.example/b.mp4"}],
    [{"bitrate": 1e400, "url": "https://video.example/a.mp4"}, {"bitrate": "NaN", "url": "https://video.example/b.mp4"}],
], ids=["string", "object", "null-and-list", "overflow-and-nan"])
def test_x_webhook_media_variants_of_any_shape_never_lose_the_delivery(variants: list[dict[str, Any]]) -> None:
    """A recorded X delivery of two DMs, the first with video variants whose bitrates are not numbers:
    both messages come out (the hostile one with a video URL of its own), nothing is quarantined."""
    from connectors import safejson, x_webhook

    body = json.loads(X_MEDIA.read_text(encoding="utf-8-sig"))
    first = body["direct_message_events"][0]
    first["message_create"]["message_data"]["attachment"]["media"]["video_info"]["variants"] = variants
    second = copy.deepcopy(first)
    second["id"] = str(int(first["id"]) + 1)
    body["direct_message_events"].append(second)
    wire = json.dumps(body).replace('"1e400"', "1e400").replace("1e+400", "1e400")
    parsed = x_webhook.parse(safejson.loads(wire), frozenset({body["for_user_id"]}))
    [batch] = parsed.batches
    assert [m.external_id for m in batch.messages] == [first["id"], second["id"]] and not batch.quarantined
    for message in batch.messages:
        [attachment] = message.attachments
        assert attachment.url in {v["url"] for v in variants}
