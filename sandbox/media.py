"""Attachment, story, share and media shapes as the platforms return them, with expiring CDN URLs.

Meta CDN links are signed and expire (`oe=` is the expiry as hex epoch seconds); Instagram story media
sits behind `lookaside.fbsbx.com`; X DM media lives on `ton.twitter.com` / `video.twimg.com`.
"""

from __future__ import annotations

import random
from typing import Any

from sandbox.state import b64

EXPIRY_SECONDS = 3 * 86400  # fbcdn links stop working a few days after they are handed out


def _sig(rng: random.Random, nbytes: int = 18) -> str:
    return b64(rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big"))


def _oe(now: float) -> str:
    return format(int(now + EXPIRY_SECONDS), "08X")


def image(rng: random.Random, now: float, width: int = 1080, height: int = 1920) -> dict[str, Any]:
    att_id = str(rng.randrange(10**15, 10**16))
    a, b, c = rng.randrange(10**8, 10**9), rng.randrange(10**15, 10**16), rng.randrange(10**18, 10**19)
    base = f"https://scontent.xx.fbcdn.net/v/t1.15752-9/{a}_{b}_{c}_n.jpg"
    query = f"?_nc_cat={rng.randrange(100, 112)}&ccb=1-7&_nc_sid=fc17b8&_nc_ohc={_sig(rng, 9)}&oh=03_{_sig(rng)}&oe={_oe(now)}"
    preview = f"https://scontent.xx.fbcdn.net/v/t1.15752-9/p280x280/{a}_{b}_{c}_n.jpg" + query
    return {
        "id": att_id,
        "mime_type": "image/jpeg",
        "name": f"image-{att_id}",
        "size": rng.randrange(40_000, 900_000),
        "image_data": {
            "width": width,
            "height": height,
            "max_width": width,
            "max_height": height,
            "url": base + query,
            "preview_url": preview,
            "image_type": 1,
            "render_as_sticker": False,
        },
    }


def video(rng: random.Random, now: float, seconds: int = 23) -> dict[str, Any]:
    att_id = str(rng.randrange(10**15, 10**16))
    a, b = rng.randrange(10**8, 10**9), rng.randrange(10**15, 10**16)
    query = f"?_nc_cat={rng.randrange(100, 112)}&ccb=1-7&_nc_sid=060d78&oh=00_{_sig(rng)}&oe={_oe(now)}"
    return {
        "id": att_id,
        "mime_type": "video/mp4",
        "name": f"video-{att_id}.mp4",
        "size": rng.randrange(2_000_000, 20_000_000),
        "video_data": {
            "width": 720,
            "height": 1280,
            "length": seconds,
            "video_type": 0,
            "url": f"https://video.xx.fbcdn.net/v/t42.3356-2/{a}_{b}_n.mp4/video-{att_id}.mp4" + query,
            "preview_url": f"https://scontent.xx.fbcdn.net/v/t15.3394-10/{a}_{b}_n.jpg" + query,
            "rotation": 0,
        },
    }


def file(rng: random.Random, now: float, name: str = "bukti-transfer.pdf") -> dict[str, Any]:
    att_id = str(rng.randrange(10**15, 10**16))
    return {
        "id": att_id,
        "mime_type": "application/pdf",
        "name": name,
        "size": rng.randrange(60_000, 400_000),
        "file_url": f"https://cdn.fbsbx.com/v/t59.2708-21/{rng.randrange(10**8, 10**9)}_{att_id}_n.pdf/{name}"
        f"?_nc_cat=1&ccb=1-7&_nc_sid=0cab14&oh=03_{_sig(rng)}&oe={_oe(now)}",
    }


def story(rng: random.Random, kind: str) -> dict[str, Any]:
    """An Instagram story reference: kind is "reply_to" or "mention"."""
    asset = str(rng.randrange(18_000_000_000_000_000, 18_099_999_999_999_999))
    link = f"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={asset}&signature={_sig(rng, 30)}"
    return {kind: {"link": link, "id": asset}}


def ig_share(rng: random.Random) -> list[dict[str, Any]]:
    # Instagram returns only the media URL of a shared post.
    asset = str(rng.randrange(18_000_000_000_000_000, 18_099_999_999_999_999))
    return [{"link": f"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={asset}&signature={_sig(rng, 30)}"}]


def messenger_share(rng: random.Random, name: str, slug: str) -> list[dict[str, Any]]:
    return [
        {
            "link": f"https://www.tokoshop.co.id/p/{slug}-{rng.randrange(10**9, 10**10)}",
            "name": name,
            "description": "Belanja di TokoShop: gratis ongkir, cashback, bayar di tempat.",
            "picture": f"https://external.xx.fbcdn.net/emg1/v/t13/{rng.randrange(10**18, 10**19)}?url=https%3A%2F%2Fimages.tokoshop.co.id%2Fp%2F{slug}.jpg&oh=06_{_sig(rng)}",
        }
    ]


def sticker(rng: random.Random, now: float) -> str:
    return (
        f"https://scontent.xx.fbcdn.net/v/t39.1997-6/{rng.randrange(10**8, 10**9)}_{rng.randrange(10**15, 10**16)}_n.png"
        f"?_nc_cat=1&ccb=1-7&_nc_sid=ac3552&oh=00_{_sig(rng)}&oe={_oe(now)}"
    )


def x_photo(rng: random.Random, event_id: str) -> dict[str, Any]:
    media_id = str(rng.randrange(1_800_000_000_000_000_000, 1_900_000_000_000_000_000))
    return {
        "media_key": f"3_{media_id}",
        "type": "photo",
        "url": f"https://ton.twitter.com/1.1/ton/data/dm/{event_id}/{media_id}/{_sig(rng, 6)}.jpg",
        "width": 1200,
        "height": 1600,
    }


def x_video(rng: random.Random, event_id: str, seconds: int = 17) -> dict[str, Any]:
    media_id = str(rng.randrange(1_800_000_000_000_000_000, 1_900_000_000_000_000_000))
    tag = _sig(rng, 9)
    return {
        "media_key": f"7_{media_id}",
        "type": "video",
        "preview_image_url": f"https://pbs.twimg.com/dm_video_preview/{media_id}/img/{tag}.jpg",
        "width": 720,
        "height": 1280,
        "duration_ms": seconds * 1000,
        "variants": [
            {"bit_rate": 2176000, "content_type": "video/mp4", "url": f"https://video.twimg.com/dm_video/{media_id}/vid/avc1/720x1280/{tag}.mp4"},
            {"content_type": "application/x-mpegURL", "url": f"https://video.twimg.com/dm_video/{media_id}/pl/{tag}.m3u8"},
        ],
    }


def from_spec(rng: random.Random, now: float, spec: dict[str, Any]) -> dict[str, Any]:
    """Turn a short attachment spec ({"type": "image"|"video"|"file", ...}) into a Graph attachment."""
    kind = spec.get("type", "image")
    if kind == "video":
        att = video(rng, now)
    elif kind in ("file", "pdf"):
        att = file(rng, now, spec.get("name", "dokumen.pdf"))
    else:
        att = image(rng, now)
    if spec.get("url"):
        key = {"video": "video_data", "image": "image_data"}.get(kind)
        if key:
            att[key]["url"] = spec["url"]
        else:
            att["file_url"] = spec["url"]
    return att
