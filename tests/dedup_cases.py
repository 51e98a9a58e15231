"""A small labelled set of customer messages for the dedup order tests (and their expected grouping).

Each customer case is a list of messages with the label of the ticket they must end up in; the
grouping ("tickets as sets of messages") is read back from the store following merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from connectors.base import InboundMessage, Participant
from connectors.enums import Channel, Direction, MessageKind
from inbox.store.models import Message, Ticket

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
PLATFORM = {"facebook": "104920378912345", "instagram": "17841400000000001", "x": "1500000000000000001"}
ACCOUNTS = {"facebook": "toko-fb", "instagram": "toko-ig", "x": "toko-x"}


@dataclass(frozen=True)
class Msg:
    eid: str
    channel: str
    thread: str
    user: str
    text: str
    minutes: float
    handle: str | None = None
    name: str | None = None
    group: str = ""  # messages with the same label must share one ticket, others never

    def inbound(self) -> InboundMessage:
        cust = Participant(self.user, handle=self.handle, name=self.name)
        return InboundMessage(
            Channel(self.channel), PLATFORM[self.channel], self.eid, self.thread, Direction.IN, cust, cust, self.text,
            MessageKind.TEXT, T0 + timedelta(minutes=self.minutes),
        )


INV = "INV/20261120/MPL/38172655{:02d}"
DAY = 24 * 60


def cases() -> list[Msg]:
    out: list[Msg] = []

    def add(group: str, *msgs: tuple[Any, ...]) -> None:
        for i, (ch, thread, user, text, minutes, handle, name) in enumerate(msgs):
            out.append(Msg(f"{group}-{i}", ch, thread, user, text, minutes, handle, name, group))

    # One customer on three channels, the invoice in every first message; the name written three ways.
    add("rina",
        ("instagram", "ig-rina", "ig-1", f"Refund {INV.format(1)} belum masuk kak", 0, "rina.wulandari", None),
        ("facebook", "fb-rina", "fb-1", f"Halo min, refund {INV.format(1)} gimana?", 3, None, "Rína Wulandari 🌸"),
        ("x", "x-rina", "x-1", f"{INV.format(1)} refundnya belum ya", 6, "RinaWulandari", "rina"))
    # The invoice only in the second message of one thread (a merge when that thread stored first).
    add("budi",
        ("facebook", "fb-budi", "fb-2", "halo kak, mau tanya pesanan", 10, None, "Budi Hartono"),
        ("facebook", "fb-budi", "fb-2", f"ini nomornya {INV.format(2)} belum sampai", 12, None, "Budi Hartono"),
        ("instagram", "ig-budi", "ig-2", f"Pesanan {INV.format(2)} belum sampai, sudah 5 hari", 15, "budi_hartono", None))
    # Someone else quoting Budi's invoice: flagged only, never grouped.
    add("joko", ("x", "x-joko", "x-3", f"Saya mau komplain {INV.format(2)} tolong refund ke saya", 20, "jokowidodo88", "Joko"))
    # Two different people with a common name and the same generic complaint, no invoice.
    add("siti-a", ("facebook", "fb-siti", "fb-4", "akun saya diblokir tolong dibantu", 30, None, "Siti Rahayu"))
    add("siti-b", ("instagram", "ig-siti", "ig-4", "akun saya diblokir tolong dibantu", 31, "siti.rahayu.99", "Siti Rahayu"))
    # A customer repeating herself in her thread (stored, one ticket).
    add("dewi",
        ("instagram", "ig-dewi", "ig-5", "Kak paket saya belum sampai sudah seminggu", 40, "dewi.lestari", None),
        ("instagram", "ig-dewi", "ig-5", "kakkk paket sayaa belum sampaiii udh seminggu!!! 😭", 50, "dewi.lestari", None))
    # The same invoice and name, ten days apart: outside the window, two tickets.
    add("eko-1", ("facebook", "fb-eko", "fb-6", f"Pembayaran {INV.format(6)} gagal", 60, None, "Eko Saputra"))
    add("eko-2", ("x", "x-eko", "x-6", f"Pembayaran {INV.format(6)} gagal lagi", 60 + 10 * DAY, "ekosaputra", None))
    # A chain: each pair within the window, the ends not; one ticket all the same.
    add("putri",
        ("facebook", "fb-putri", "fb-7", f"Barang {INV.format(7)} rusak", 70, None, "Putri Kusuma"),
        ("instagram", "ig-putri", "ig-7", f"Soal {INV.format(7)} belum ada kabar", 70 + 5 * DAY, "putri.kusuma", None),
        ("x", "x-putri", "x-7", f"{INV.format(7)} tolong diproses", 70 + 10 * DAY, "PutriKusuma", None))
    # A customer on two channels without an invoice: two tickets (a display name is not an identity).
    add("agus-fb", ("facebook", "fb-agus", "fb-8", "Kenapa saldo saya terpotong dua kali?", 80, None, "Agus Pratama"))
    add("agus-ig", ("instagram", "ig-agus", "ig-8", "Kenapa saldo saya terpotong dua kali?", 82, "agus.pratama", None))
    # The invoice in the second message of both threads.
    add("maya",
        ("x", "x-maya", "x-9", "halo admin", 90, "mayasari", None),
        ("instagram", "ig-maya", "ig-9", "permisi kak", 91, "maya.sari", None),
        ("x", "x-maya", "x-9", f"pesanan {INV.format(9)} dibatalkan sepihak", 92, "mayasari", None),
        ("instagram", "ig-maya", "ig-9", f"kenapa {INV.format(9)} dibatalkan?", 93, "maya.sari", None))
    return out


def expected_grouping(msgs: list[Msg]) -> frozenset[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for m in msgs:
        groups.setdefault(m.group, set()).add(m.eid)
    return frozenset(frozenset(g) for g in groups.values())


def grouping(engine: Any) -> frozenset[frozenset[str]]:
    """The store's tickets as sets of customer messages (a merged ticket's messages count as its target's)."""
    t, m = Ticket.__table__, Message.__table__
    with engine.connect() as conn:
        into = dict(conn.execute(sa.select(t.c.id, t.c.merged_into_id)).all())
        rows = conn.execute(sa.select(m.c.external_id, m.c.ticket_id).where(m.c.direction == "in")).all()
    groups: dict[int | None, set[str]] = {}
    for eid, tid in rows:
        root, hops = tid, 0
        while root is not None and into.get(root) and hops < 32:
            root, hops = into[root], hops + 1
        groups.setdefault(root, set()).add(eid)
    assert None not in groups, "a customer message without a ticket"
    return frozenset(frozenset(g) for g in groups.values())
