"""Sandbox benchmark: building and paging a large generated dataset, against the small seeded one.

What matters is that the sandbox's cost per message to build, and per page to serve, does not grow
with the dataset, so the ratios compare the large dataset (default 100k messages) with a small one
(2k) measured in the same run: ≈1× means flat.

    .venv/bin/python bench/sandbox_large.py [--messages 100000] [--small 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import Sandbox  # noqa: E402

PAGE_ID = "104920378912345"


def _page_all(sb: Sandbox) -> tuple[int, float]:
    """Every Messenger conversation and every X DM event page; (pages, seconds)."""
    env = sb.env()
    http = requests.Session()
    pages = 0
    started = time.perf_counter()
    url: str | None = f"{sb.base_url}/facebook/v23.0/{PAGE_ID}/conversations"
    params: dict[str, Any] = {"access_token": env["INBOX_SANDBOX_FB_TOKEN"], "platform": "messenger", "limit": 100}
    while url:
        body = http.get(url, params=params, timeout=30).json()
        pages += 1
        url, params = body.get("paging", {}).get("next"), {}
    http.headers["Authorization"] = "Bearer " + env["INBOX_SANDBOX_X_TOKEN"]
    token = None
    while True:
        query: dict[str, Any] = {"max_results": 100, **({"pagination_token": token} if token else {})}
        body = http.get(f"{sb.base_url}/x/2/dm_events", params=query, timeout=30).json()
        pages += 1
        token = body["meta"].get("next_token")
        if not token:
            break
    return pages, time.perf_counter() - started


def _measure(messages: int) -> dict[str, float]:
    started = time.perf_counter()
    sb = Sandbox(seed=3, large=messages, x_rate_limit=1_000_000)
    built = time.perf_counter() - started
    total = sum(len(sb.all_message_ids(a)) for a in ("tokoshop-fb", "tokoshop-ig", "tokoshop-x"))
    with sb.start():
        pages, paged = _page_all(sb)
    return {"messages": total, "build_s": built, "pages": pages, "page_s": paged}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=2_000)
    args = ap.parse_args()
    small, large = _measure(args.small), _measure(args.messages)
    for name, m in (("small", small), ("large", large)):
        print(f"{name}: {m['messages']:,.0f} messages built in {m['build_s']:.2f} s; {m['pages']:,.0f} pages in {m['page_s']:.2f} s")
    build_ratio = (large["build_s"] / large["messages"]) / (small["build_s"] / small["messages"])
    page_ratio = (large["page_s"] / large["pages"]) / (small["page_s"] / small["pages"])
    print(f"build cost per message, large/small: {build_ratio:.2f}x")
    print(f"serving cost per page, large/small:  {page_ratio:.2f}x")


if __name__ == "__main__":
    main()
