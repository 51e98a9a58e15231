"""A generated dataset of about N messages over the three default accounts (or of a given shape:
`build_shape`, a care desk's), for paging and benchmarks.

Built directly into the state's structures (no per-message index maintenance: indexes are sorted once
at the end), so 100k messages take well under a second. Deterministic from the seed.
"""

from __future__ import annotations

import random

from sandbox.state import META_HORIZON, MetaAccount, Msg, Person, State, Thread, XEvent, b64

FIRST = ("Rina", "Budi", "Siti", "Agus", "Dewi", "Eko", "Putri", "Fajar", "Nur", "Yusuf", "Maya", "Hendra", "Lina",
         "Rizky", "Ayu", "Dimas", "Sarah", "Kevin", "Wulan", "Andi", "Bayu", "Citra", "Indah", "Joko", "Mega", "Tono")
LAST = ("Santoso", "Wulandari", "Pratama", "Lestari", "Saputra", "Hidayat", "Kusuma", "Wijaya", "Nugroho", "Halim",
        "Siregar", "Harahap", "Simanjuntak", "Tanoto", "Gunawan", "Hartono", "Setiawan", "Rahmawati")
CUSTOMER = (
    "Halo kak, pesanan {inv} belum sampai, sudah {d} hari",
    "Min, refund untuk {inv} kapan masuk ya?",
    "Pembayaran gagal tapi saldo terpotong Rp {amt}. {inv}",
    "Kak tolong batalkan pesanan {inv}",
    "Barang yang datang tidak sesuai foto, seller tidak respon. {inv}",
    "Akun saya diblokir, tidak bisa login sejak kemarin",
    "Hi, my order {inv} is late. Any update?",
    "I was charged twice for {inv}, please refund one of them",
    "Paket diterima dalam keadaan rusak 😭 {inv}",
    "Kurirnya bilang alamat tidak ditemukan, padahal lengkap. {inv}",
    "Voucher cashback saya belum masuk kak 🙏",
    "Ada yang ngaku CS minta kode OTP, ini penipuan ya?",
    "kak??",
    "tolong dibalas ya min",
    "Terima kasih kak, sudah beres 👍",
    "Can I change the delivery address for {inv}?",
    "VA saya expired padahal sudah transfer Rp {amt}",
    "Seller minta transaksi di luar aplikasi, aman nggak kak?",
)
BRAND = (
    "Halo Kak, terima kasih sudah menghubungi TokoShop 🙏 Kami cek dulu ya.",
    "Mohon maaf atas ketidaknyamanannya Kak. Pesanan {inv} sedang kami eskalasi.",
    "Dana akan kembali maksimal 3x24 jam kerja ya Kak.",
    "Hi, thanks for your patience. We've escalated {inv} to our logistics team.",
    "Untuk keamanan, jangan pernah bagikan kode OTP kepada siapa pun ya Kak.",
    "Boleh dikirim foto barang dan resi pengirimannya Kak?",
)
SHARE = {"fb": 0.4, "ig": 0.3}  # the rest goes to X


# random.random() is several times cheaper than randrange(); at 100k messages that matters.
def _inv(r: float, r2: float) -> str:
    return f"INV/202611{1 + int(r * 25):02d}/MPL/{1_000_000_000 + int(r2 * 8_999_999_999)}"


def _text(rng: random.Random, templates: tuple[str, ...]) -> str:
    rand = rng.random
    tpl = templates[int(rand() * len(templates))]
    if "{" not in tpl:
        return tpl
    amt = f"{(20 + int(rand() * 2980)) * 1000:,}".replace(",", ".")
    return tpl.format(inv=_inv(rand(), rand()), d=2 + int(rand() * 13), amt=amt)


def build(state: State, n: int, seed: int) -> None:
    rng = random.Random(seed * 1_000_003 + n)
    now = state.t0
    span = 29 * 86400  # keep inside X's 30-day lookup window
    fb_n = int(n * SHARE["fb"])
    ig_n = int(n * SHARE["ig"])
    _meta(state, state.meta["tokoshop-fb"], fb_n, rng, now, span, "messenger")
    _meta(state, state.meta["tokoshop-ig"], ig_n, rng, now, span, "instagram")
    _x(state, n - fb_n - ig_n, rng, now, span)


def build_shape(state: State, conversations: int, per_thread: int, x_per_conversation: int, seed: int) -> None:
    """A care desk's shape: `conversations` threads of `per_thread` messages on each Meta account (only
    the newest 20 readable) and `conversations` X conversations of `x_per_conversation` events."""
    if conversations < 0 or per_thread < 1 or x_per_conversation < 1:
        raise ValueError("a shape needs conversations >= 0 and at least one message per thread and conversation")
    rng = random.Random(seed * 1_000_003 + conversations)
    now = state.t0
    span = 20 * 86400  # long X conversations still end inside the 30-day lookup window
    for name, platform in (("tokoshop-fb", "messenger"), ("tokoshop-ig", "instagram")):
        _meta(state, state.meta[name], conversations * per_thread, rng, now, span, platform, size=per_thread)
    _x(state, conversations * x_per_conversation, rng, now, span, size=x_per_conversation)


def _meta(state: State, acc: MetaAccount, budget: int, rng: random.Random, now: float, span: int, platform: str,
          size: int | None = None) -> None:
    brand = acc.brand
    rand = rng.random
    getbits = rng.getrandbits
    ig_id = acc.spec.platform_id
    msg_index = state.msg_index
    thread_index = state.thread_index
    keys: list[tuple[int, str]] = []
    k = 0
    base_tid = rng.randrange(10**15, 5 * 10**15)
    base_uid = rng.randrange(2 * 10**16, 3 * 10**16) if platform == "messenger" else rng.randrange(10**15, 5 * 10**15)
    while budget > 0:
        k += 1
        count = min(budget, size or 1 + int(rand() * META_HORIZON))
        budget -= count
        uid = str(base_uid + k * 7)
        name = f"{FIRST[int(rand() * len(FIRST))]} {LAST[int(rand() * len(LAST))]}"
        if platform == "messenger":
            person = Person(uid, name, None, f"{uid}@facebook.com")
            tid = f"t_{base_tid + k * 13}"
        else:
            person = Person(uid, None, f"{name.lower().replace(' ', '.')}{k}")
            tid = b64(f"ig_message_thread:1:IGMessageThread:{ig_id}:{base_tid + k * 13}".encode())
        th = Thread(tid, acc.spec.name, person)
        step = 3580 if size is None else 580  # a shaped thread's messages come closer together
        t = now - 60 - rand() * span - count * (step + 20)
        msgs = th.messages
        for i in range(count):
            t += 20 + int(rand() * step)
            outbound = i > 0 and rand() < 0.3
            if platform == "messenger":
                mid = "m_" + b64(getbits(384).to_bytes(48, "big"))
            else:
                mid = b64(f"ig_item:1:IGMessage:{ig_id}:{getbits(100)}".encode()) + "ZDZD"
            m = Msg(mid, th, int(t * 1000), brand if outbound else person, _text(rng, BRAND if outbound else CUSTOMER), outbound)
            msgs.append(m)
            msg_index[mid] = m
        th.key = (-msgs[-1].created_ms, tid)
        keys.append(th.key)
        acc.threads[tid] = th
        acc.by_customer[uid] = th
        thread_index[tid] = th
    acc.index.extend(keys)
    acc.index.sort()


def _x(state: State, budget: int, rng: random.Random, now: float, span: int, size: int | None = None) -> None:
    acc = state.x["tokoshop-x"]
    me = acc.me.id
    rand = rng.random
    base_uid = rng.randrange(10**17, 10**18)
    k = 0
    seq = 0
    while budget > 0:
        k += 1
        count = min(budget, size or 1 + int(rand() * 30))
        budget -= count
        uid = str(base_uid + k * 11)
        first, last = FIRST[int(rand() * len(FIRST))], LAST[int(rand() * len(LAST))]
        acc.users[uid] = Person(uid, f"{first} {last}", f"{first.lower()}_{last.lower()}{k}")
        conv = f"{uid}-{me}"  # every generated id is smaller than ours
        nums = acc.by_conv.setdefault(conv, [])
        t = now - 60 - rand() * span - count * 1800
        for i in range(count):
            t += 10 + int(rand() * 1790)
            outbound = i > 0 and rand() < 0.3
            seq = (seq + 1) & 0x3FFFFF
            num = ((int(t * 1000) - 1288834974657) << 22) | seq
            while num in acc.events:  # never collide with a scripted event
                num += 1
            ev = XEvent(num, conv, me if outbound else uid, _text(rng, BRAND if outbound else CUSTOMER))
            acc.events[num] = ev
            nums.append(num)
        nums.sort()
    acc.order = sorted(acc.events)
