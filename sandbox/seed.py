"""The default dataset: realistic care conversations of a marketplace brand, in Indonesian and English.

Scripted by hand so every scenario the inbox must handle is present: order status, refunds, failed
payments, cancellations, seller disputes, blocked accounts, fraud; images, a video, a file, a sticker,
an Instagram story reply and story mention, shares, an unsupported item; earlier replies from the brand;
threads whose last customer message is under 24 h, between 24 h and 7 d, and over 7 d old; one customer
writing on Instagram and X about the same invoice; one long complaint pasted on Facebook and Instagram
within the hour; a Messenger thread longer than the 20-message read horizon; an X event older than the
30-day lookup window. Text is fixed; ids and small time jitter come from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import media
from sandbox.state import Person, State


@dataclass(frozen=True)
class Line:
    hours_ago: float
    text: str | None
    brand: bool = False
    extra: tuple[str, ...] = ()  # image, video, file, story_reply, story_mention, ig_share, share, sticker, unsupported, reply_to_prev, reaction


@dataclass(frozen=True)
class Script:
    account: str
    name: str | None  # display name (Messenger, X)
    username: str | None  # handle (Instagram, X)
    lines: tuple[Line, ...]


def c(hours_ago: float, text: str | None, *extra: str) -> Line:
    return Line(hours_ago, text, False, extra)


def b(hours_ago: float, text: str, *extra: str) -> Line:
    return Line(hours_ago, text, True, extra)


D = 24.0  # hours in a day, for readability of the scripts

LONG_COMPLAINT = (
    "Selamat siang TokoShop. Saya mau komplain keras soal pesanan INV/20261117/MPL/4409182735. "
    "Saya beli rice cooker 1,8 L dari toko \"Elektronik Jaya Abadi\", barang datang tanggal 20 tapi tutupnya "
    "retak dan kabelnya terkelupas, jelas bukan barang baru. Saya sudah ajukan komplain lewat aplikasi 3 kali, "
    "sudah upload video unboxing, tapi seller tidak pernah membalas dan status komplain cuma \"menunggu respon "
    "penjual\" terus. Dana Rp 489.000 sudah terpotong dari rekening saya. Saya minta refund penuh atau barang "
    "diganti yang baru, dan tolong seller ini ditindak. Kalau sampai besok tidak ada kejelasan saya akan "
    "laporkan ke YLKI. Terima kasih."
)

SCRIPTS: tuple[Script, ...] = (
    # ── Facebook Messenger ──────────────────────────────────────────────────────────────────
    Script("tokoshop-fb", "Rina Wulandari", None, (
        c(27.5, "Halo kak, pesanan saya INV/20261118/MPL/3817265540 kok belum sampai ya? Sudah 6 hari dari tanggal kirim 😟"),
        b(27.0, "Halo Kak Rina, terima kasih sudah menghubungi TokoShop 🙏 Kami cek dulu status pengiriman INV/20261118/MPL/3817265540 ya Kak. ~Dewi"),
        b(26.8, "Kak Rina, paketnya tertahan di gudang transit Surabaya karena cuaca. Estimasi tiba 1-2 hari lagi ya Kak."),
        c(2.2, "Kak ini di aplikasi resinya masih status yang sama dari kemarin. Saya lampirkan screenshot-nya", "image"),
        c(2.1, "Tolong dibantu ya kak, itu kado ulang tahun anak saya hari Sabtu"),
    )),
    Script("tokoshop-fb", "Budi Santoso", None, (
        c(6.0, "Min pembayaran saya gagal tapi saldo GoPay sudah terpotong Rp 349.000. Nomor pesanan INV/20261124/MPL/7730019284"),
        b(5.7, "Halo Kak Budi, mohon maaf atas kendalanya. Boleh dikirimkan bukti potongan saldo dari aplikasi GoPay ya Kak, agar kami teruskan ke tim pembayaran."),
        c(5.2, None, "image"),
        c(5.1, "Itu buktinya min. Jam 09.14 kepotong, tapi pesanan di TokoShop malah dibatalkan otomatis"),
    )),
    Script("tokoshop-fb", "Siti Nurhaliza", None, (
        c(31.0, "Assalamualaikum, saya mau batalkan pesanan INV/20261123/MPL/1029384756 karena salah pilih warna. Belum dikirim kok sama seller"),
        c(30.6, "Tombol batalkan di aplikasi tidak bisa diklik kak"),
    )),
    Script("tokoshop-fb", "Michael Tan", None, (
        c(4 * D, "Hi, I returned the headphones from order INV/20261105/MPL/5581203394 two weeks ago and the refund still hasn't arrived. The return was marked as received by the seller on Nov 12."),
        b(4 * D - 0.5, "Hi Michael, thanks for reaching out and sorry for the wait. Refunds to credit cards can take up to 14 working days after the seller confirms. Could you share the last 4 digits of the card used?"),
        c(3 * D, "It's the Visa ending 4417. 14 working days is way too long honestly, other marketplaces do it in 3."),
    )),
    Script("tokoshop-fb", "Dewi Lestari", None, (
        c(10.5, "Kak, barang yang saya terima tidak sesuai. Pesan sepatu warna navy ukuran 39, yang datang hitam ukuran 41. INV/20261121/MPL/6650128833"),
        c(10.4, "Ini video unboxingnya ya", "video"),
        c(10.3, "Sellernya bilang itu salah saya karena tidak baca deskripsi, padahal di deskripsi jelas navy 😤"),
    )),
    Script("tokoshop-fb", "Agus Prasetyo", None, (
        c(9 * D, "Akun saya diblokir tanpa alasan. Saya sudah 4 tahun belanja di TokoShop. Email: agus.prasetyo82@gmail.com"),
        b(9 * D - 2, "Halo Kak Agus, mohon maaf atas ketidaknyamanannya. Untuk keamanan, mohon jangan bagikan data pribadi di chat ya Kak. Tim kami akan menghubungi Kakak lewat email terdaftar dalam 2x24 jam."),
        c(8.5 * D, "Sudah 2 hari belum ada email apa pun"),
    )),
    Script("tokoshop-fb", "Yohanes Kurniawan", None, (
        c(1.6, LONG_COMPLAINT),
    )),
    Script("tokoshop-fb", "Hendra Gunawan", None, (
        c(0.9, "Min tolong! Barusan ada yang telepon ngaku CS TokoShop, minta kode OTP katanya buat verifikasi refund. Saya sudah kasih kodenya 😭 sekarang saldo TokoPay saya Rp 2.150.000 hilang. Ini penipuan kan??"),
        c(0.85, "Nomornya 0812-9981-2231, saya ada rekaman percakapannya"),
    )),
    Script("tokoshop-fb", "Putri Ayu", None, (
        c(2.5 * D, "Kak paket INV/20261119/MPL/2291047365 sudah sampai, makasih banyak ya"),
        b(2.5 * D - 0.2, "Sama-sama Kak Putri! Senang bisa membantu. Jangan lupa beri ulasan ya Kak ⭐"),
        c(2.4 * D, None, "sticker"),
    )),
    Script("tokoshop-fb", "林美玲 Linda Wijaya", None, (
        c(12.0, "Hello kak, voucher cashback 11.11 saya kok tidak masuk? Minimum belanja sudah lewat, order INV/20261111/MPL/8823410056, total Rp 1.245.000"),
        c(11.9, "Di syarat dan ketentuan tulisannya cashback masuk max 7 hari, ini sudah 14 hari"),
    )),
    Script("tokoshop-fb", "Bambang Sutrisno", None, (
        c(20 * D, "Pesanan COD saya INV/20261101/MPL/3300918274 ditolak kurir katanya alamat tidak ditemukan, padahal alamat lengkap"),
        b(20 * D - 1, "Halo Pak Bambang, mohon maaf. Kami sudah minta kurir melakukan pengiriman ulang besok dengan menghubungi Bapak terlebih dahulu."),
        c(19 * D, "Sudah diterima, terima kasih"),
        b(19 * D - 0.3, "Terima kasih kembali Pak Bambang 🙏"),
    )),
    Script("tokoshop-fb", "Ahmad Fauzi أحمد فوزي", None, (
        c(50.0, "Kak, cicilan 0% kartu kredit saya gagal terus di checkout, muncul tulisan \"transaksi ditolak bank\". Padahal limit masih cukup"),
        b(49.5, "Halo Kak Ahmad, untuk cicilan 0% minimal transaksi Rp 500.000 dan hanya untuk bank tertentu. Boleh diinfokan bank penerbit kartunya Kak?"),
        c(49.0, "BCA kak. Total belanja Rp 3.400.000"),
    )),
    Script("tokoshop-fb", "Sarah Johnson", None, (
        c(3.5, "Hello, I was charged twice for the same order (INV/20261124/MPL/9910233847). Two debits of IDR 612,000 on my card statement this morning. Please refund the duplicate."),
        c(3.4, "Attaching the statement", "file"),
    )),
    Script("tokoshop-fb", "Andi Saputra", None, (
        c(1.0 * D + 3, "Kak mau tanya ini link promo resmi dari TokoShop bukan?", "share"),
    )),
    Script("tokoshop-fb", "Ketut Ardana", None, (
        c(40.0, "Om Swastyastu. Kak, kenapa ongkir ke Gianyar Rp 87.000 padahal ke Denpasar cuma Rp 18.000? Beratnya sama 1 kg"),
        b(39.5, "Halo Pak Ketut, ongkir dihitung kurir berdasarkan kecamatan tujuan. Bapak bisa pilih kurir lain di halaman checkout yang mungkin lebih hemat ya."),
        c(39.0, "Sudah saya cek semua kurir, paling murah tetap Rp 71.000", "reply_to_prev"),
    )),
    Script("tokoshop-fb", "Maria Gonzales", None, (
        c(16.0, "Hi! The seller sent me a used phone case, there are scratches all over. Order INV/20261122/MPL/8801927364"),
        b(15.5, "Hi Maria, we're sorry! Could you upload photos in the complaint form on the order page? The seller has 2x24 hours to respond."),
        c(15.0, "Done, uploaded 3 photos. Udah ya kak, tolong dipantau 🙏", "reply_to_prev"),
    )),
    Script("tokoshop-fb", "Toko Berkah Jaya", None, (
        c(5 * D, "Selamat sore, kami seller Toko Berkah Jaya. Dana penjualan Rp 12.450.000 ditahan karena \"indikasi transaksi tidak wajar\". Itu pesanan asli dari pelanggan korporat, INV/20261118/MPL/6601928374 s.d. 6601928390"),
        b(5 * D - 1, "Selamat sore Toko Berkah Jaya. Penahanan dana adalah prosedur keamanan standar. Tim Risk kami meninjau maksimal 5 hari kerja; mohon siapkan faktur dan PO dari pembeli ya."),
        c(5 * D - 2, "Faktur dan PO sudah kami kirim lewat email ke seller-care@tokoshop.co.id tadi siang", "file"),
    )),
    # ── Instagram through the Facebook Page ──────────────────────────────────────────────────
    Script("tokoshop-ig", None, "nadia.putri_", (
        c(3.0, "Kak yang di story ini masih ready ukuran M? 😍", "story_reply"),
        c(2.95, "Yang warna sage ya kak"),
    )),
    Script("tokoshop-ig", None, "kevin.halim", (
        c(20.0, None, "story_mention"),
        c(19.9, "Makasih TokoShop paketnya cepet banget nyampe 🔥🔥"),
    )),
    Script("tokoshop-ig", None, "yohanes.kurniawan", (
        c(0.95, LONG_COMPLAINT),
    )),
    Script("tokoshop-ig", None, "dinda_ayu", (
        c(6.2, None, "ig_share"),
        c(6.1, "kak ini kok harganya beda di app? di postingan Rp 129.000 di app Rp 159.000"),
    )),
    Script("tokoshop-ig", None, "ardi.saputra99", (
        c(28.0, None, "unsupported"),
        c(27.9, "kak barusan saya kirim voice note, intinya paket saya INV/20261122/MPL/4471029385 diterima orang lain"),
    )),
    Script("tokoshop-ig", None, "melati.sari", (
        c(4.0, "Halo kak, blender yang saya beli pecah waktu sampai. Nomor pesanan INV/20261119/MPL/5520931847. Bisa refund?"),
        b(3.8, "Halo Kak Melati, mohon maaf atas kejadiannya 🙏 Boleh dikirim foto kondisi barang dan kemasannya Kak?"),
        c(3.6, "Ini kak", "image"),
    )),
    Script("tokoshop-ig", None, "tommy.wijaya", (
        c(4 * D + 5, "Hi, my account got suspended right after I changed my phone number. I can't log in or check my orders. Please help"),
        b(4 * D + 4, "Hi Tommy, sorry to hear that. For security we lock accounts after a number change until the new number is verified. We've sent a verification link to your registered email."),
        c(4 * D, "Got nothing in my inbox or spam folder"),
    )),
    Script("tokoshop-ig", None, "bunda.rafa", (
        c(15.0, "Kak tolong batalin pesanan saya 😭🙏 INV/20261124/MPL/1183920475, ternyata sudah dibeliin suami di toko lain"),
    )),
    Script("tokoshop-ig", None, "gita.ramadhani", (
        c(12 * D, "Kak VA BNI saya expired padahal saya sudah transfer 5 menit sebelum jam habis. INV/20261112/MPL/6029384711"),
        b(12 * D - 1, "Halo Kak Gita, dana yang masuk setelah VA kedaluwarsa akan otomatis dikembalikan ke rekening asal maksimal 3x24 jam ya Kak."),
    )),
    Script("tokoshop-ig", None, "fikri_hidayat", (
        c(22.0, "Min bayar pakai QRIS gagal terus dari tadi pagi, muncul \"transaksi tidak dapat diproses\". Padahal saldo e-wallet cukup"),
        b(21.8, "Halo Kak Fikri, sedang ada gangguan di salah satu penyedia QRIS. Sementara bisa pakai metode pembayaran lain dulu ya Kak 🙏"),
        c(21.5, "Oke min, sudah bisa pakai VA. Makasih ya", "reaction"),
    )),
    Script("tokoshop-ig", None, "cici.lestari", (
        c(2.0, "Kak aku di-DM akun @tokoshop.official.promo katanya menang undian, disuruh transfer biaya admin Rp 250.000 dulu. Itu akun resmi bukan?"),
        c(1.95, "Ini screenshot DM-nya", "image"),
    )),
    Script("tokoshop-ig", None, "hana.kimura.jkt", (
        c(60.0, "Halo, saya orang Jepang tinggal di Jakarta 🇯🇵 Paket saya INV/20261120/MPL/2210938475 statusnya 'gagal kirim', alamat apartemen di Kuningan. ありがとう"),
    )),
    Script("tokoshop-ig", None, "rizky.firmansyah", (
        c(8.0, "Min kardusnya penyok parah, isinya (gelas kaca 6 pcs) pecah 4. INV/20261123/MPL/7740019283", "image"),
        c(7.9, "Apakah bisa klaim asuransi pengiriman?"),
    )),
    # ── Instagram with Instagram Login ───────────────────────────────────────────────────────
    Script("tokoshop-ig-direct", None, "sari.handayani", (
        c(2.0, "Kak pesanan INV/20261123/MPL/3349102287 kok statusnya masih 'dikemas' dari 2 hari lalu?"),
    )),
    Script("tokoshop-ig-direct", None, "andre_pratama", (
        c(2 * D, "Hi, I'd like a refund for the smartwatch, order INV/20261120/MPL/9012384475. The strap broke on day 2."),
        b(2 * D - 1, "Hi Andre, sorry about that! Please submit a return from the order page within 7 days of delivery and choose 'Product defect'. We'll handle the rest."),
    )),
    Script("tokoshop-ig-direct", None, "vina.rahma", (
        c(5.0, None, "story_mention"),
        c(4.9, "Kak makasih ya hampers-nya sampai dengan selamat 😍 sudah aku mention di story"),
        b(4.5, "Wah terima kasih Kak Vina! Senang sekali hampers-nya sampai dengan baik 🥰"),
    )),
    Script("tokoshop-ig-direct", None, "dodi_motor", (
        c(30.0, "Kak kampas rem yang datang beda tipe, saya pesan untuk Vario 125 yang datang untuk Beat. INV/20261123/MPL/5093847561", "image"),
        b(29.0, "Halo Kak Dodi, mohon maaf. Silakan ajukan pengembalian dengan alasan 'barang tidak sesuai', ongkir retur kami tanggung ya Kak."),
    )),
    Script("tokoshop-ig-direct", None, "lulu.kitchen.id", (
        c(9 * D, "Halo min, saya seller. Dana penjualan bulan ini belum cair ke rekening, sudah lewat 3 hari kerja"),
    )),
    # ── X ─────────────────────────────────────────────────────────────────────────────────────
    Script("tokoshop-x", "Melati Sari", "melatisari_", (
        c(3.0, "Halo @TokoShopCare, saya sudah DM di IG juga. Blender pesanan INV/20261119/MPL/5520931847 datang pecah, mohon refund ya"),
    )),
    Script("tokoshop-x", "Dimas Anggara", "dimasangg", (
        c(1.2, "Min transaksi gagal tapi saldo kepotong Rp 75.000 pas beli pulsa. INV/20261125/MPL/1100293847", "image"),
        b(1.0, "Halo Kak Dimas, mohon maaf atas kendalanya. Dana akan kembali otomatis maksimal 1x24 jam. Kalau belum masuk, kabari kami lagi ya."),
        c(0.5, "Oke min ditunggu"),
    )),
    Script("tokoshop-x", "Jessica Lim 林洁", "jesslim_", (
        c(30.0, "Hi, can I still cancel order INV/20261123/MPL/2039485761? Seller hasn't shipped it yet."),
    )),
    Script("tokoshop-x", "Rudi Hartono", "rudihrtn", (
        c(5.0, "Min ini link resmi bukan? Katanya dapet hadiah iPhone dari TokoShop, disuruh isi data kartu kredit: bit.ly/tokoshop-hadiah2026"),
        b(4.8, "Halo Kak Rudi, itu BUKAN link resmi TokoShop. Mohon jangan isi data apa pun dan laporkan akun pengirimnya. Info resmi hanya di tokoshop.co.id ya Kak."),
        c(4.7, "Waduh, istri saya sudah terlanjur isi 😭 gimana dong"),
    )),
    Script("tokoshop-x", "Wulan Dari", "wulan_dari", (
        c(3 * D, "Seller kirim barang KW, beda jauh sama foto. Komplain saya ditolak katanya lewat batas waktu. INV/20261118/MPL/5560193827"),
        b(3 * D - 1, "Halo Kak Wulan, mohon maaf. Kami bantu eskalasi ke tim resolusi. Boleh kirim foto barang yang diterima?"),
        c(3 * D - 1.5, "Videonya ya kak", "video"),
    )),
    Script("tokoshop-x", "Eko Susilo", "ekosusilo88", (
        c(8 * D, "Akun TokoShop saya dinonaktifkan, katanya aktivitas mencurigakan. Saya cuma beli 3 HP buat kantor"),
    )),
    Script("tokoshop-x", "Nurul Hidayah", "nurulhdyh", (
        c(2 * D, "Kak, pesanan saya sama kayak kasus di sini ya? https://x.com/tokoshopcare/status/1861122334455667788 INV/20261121/MPL/3344556677 belum ada update"),
    )),
    Script("tokoshop-x", "Anton Wibowo", "anton_wbw", (
        c(35 * D, "Min, kapan flash sale 12.12 mulai?"),
        b(35 * D - 2, "Halo Kak Anton, flash sale 12.12 mulai tanggal 12 Desember jam 00.00 WIB ya!"),
    )),
    Script("tokoshop-x", "Putu Eka", "putueka_bali", (
        c(9.0, "@TokoShopCare paket saya nyangkut 9 hari di hub Denpasar #TokoShopLambat INV/20261116/MPL/4412093857"),
        b(8.5, "Halo Kak Putu, mohon maaf atas keterlambatannya 🙏 Kami sudah eskalasi ke tim logistik, update paling lambat besok siang ya."),
    )),
    Script("tokoshop-x", "Bima Sakti", "bimasakti", (
        c(26.0, "My account was locked after I tried to log in from Singapore. I'm travelling for work, please unlock it"),
    )),
    Script("tokoshop-x", "Ratna Kusuma", "ratnaksm", (
        c(10 * D, "Refund INV/20261109/MPL/7788990011 sudah masuk. Terima kasih TokoShop 👍"),
        b(10 * D - 0.5, "Terima kasih kembali Kak Ratna 🙌"),
    )),
)

# A Messenger customer who chats in many short lines: more than the 20 readable messages.
CHATTY_LINES = (
    "halo", "min", "kak", "tolong dong", "pesanan saya", "INV/20261122/MPL/6612093847", "kok dibatalin sepihak",
    "saya udah bayar", "lewat VA Mandiri", "jam 8 pagi", "terus jam 10 dibatalin", "alasannya stok habis",
    "tapi di toko masih ada stoknya", "saya cek barusan", "masih bisa dibeli", "harganya naik 50rb", "ini gimana sih",
    "dananya kemana", "kapan balik", "saya butuh buat besok", "tolong dibalas", "min??", "halo???",
    "sudah 1 jam nih", "😡",
)


def build(state: State) -> None:
    """Load the scripted conversations into `state` (clock-relative, ids from the state's rng)."""
    now = state.t0
    rng = state.rng
    x_people: dict[str, Person] = {}
    for script in SCRIPTS:
        if script.account in state.meta:
            _meta_script(state, script, now)
        else:
            _x_script(state, script, now, x_people)
    acc = state.meta["tokoshop-fb"]
    person = Person(state.psid(), "Fajar Nugroho")
    person.email = f"{person.id}@facebook.com"
    thread = state.new_thread(acc, person)
    start = now - 7.0 * 3600
    for i, text in enumerate(CHATTY_LINES):
        state.add_msg(thread, int((start + i * 95 + rng.randrange(0, 30)) * 1000), False, text)
    state.add_msg(thread, int((start + 3000) * 1000), True, "Halo Kak Fajar, mohon maaf menunggu. Kami cek pesanan INV/20261122/MPL/6612093847 sekarang ya Kak.")


def _meta_script(state: State, script: Script, now: float) -> None:
    acc = state.meta[script.account]
    rng = state.rng
    if acc.platform == "messenger":
        person = Person(state.psid(), script.name)
        person.email = f"{person.id}@facebook.com"
    else:
        person = Person(state.igsid(), script.name, script.username)
    thread = state.new_thread(acc, person)
    for line in script.lines:
        at_ms = int((now - line.hours_ago * 3600) * 1000) - rng.randrange(0, 50_000)
        msg = state.add_msg(thread, at_ms, line.brand, line.text)
        for extra in line.extra:
            if extra in ("image", "video", "file"):
                msg.attachments = (msg.attachments or []) + [media.from_spec(rng, now, {"type": extra})]
            elif extra == "story_reply":
                msg.story = media.story(rng, "reply_to")
            elif extra == "story_mention":
                msg.story = media.story(rng, "mention")
            elif extra == "ig_share":
                msg.shares = media.ig_share(rng)
            elif extra == "share":
                msg.shares = media.messenger_share(rng, "PROMO 12.12 — Voucher Rp 500.000 untuk pengguna baru", "promo-1212")
            elif extra == "sticker":
                msg.sticker = media.sticker(rng, now)
                msg.attachments = [{"id": str(rng.randrange(10**15, 10**16)), "mime_type": "image/png", "name": "sticker.png",
                                    "image_data": {"url": msg.sticker, "width": 240, "height": 240, "render_as_sticker": True,
                                                   "image_type": 1, "max_width": 240, "max_height": 240}}]
            elif extra == "unsupported":
                msg.unsupported = True
            elif extra == "reply_to_prev":
                earlier = [m for m in thread.messages if m is not msg]
                if earlier:
                    msg.reply_to = {"mid": earlier[-1].id, "is_self_reply": not earlier[-1].outbound}
            elif extra == "reaction":
                brand = acc.brand
                who = {"username": brand.username, "id": brand.id} if acc.platform == "instagram" else {"name": brand.name, "id": brand.id}
                msg.reactions = [{"reaction": "love", "users": [who]}]


def _x_script(state: State, script: Script, now: float, people: dict[str, Person]) -> None:
    acc = state.x[script.account]
    rng = state.rng
    key = script.username or script.name or ""
    person = people.get(key)
    if person is None:
        person = Person(state.x_user_id(), script.name, script.username)
        people[key] = person
    acc.users[person.id] = person
    conv = state.conv_id(person.id, acc.me.id)
    for line in script.lines:
        at_ms = int((now - line.hours_ago * 3600) * 1000) - rng.randrange(0, 50_000)
        sender = acc.me.id if line.brand else person.id
        ev = state.add_event(acc, conv, sender, at_ms, line.text)
        if "image" in line.extra:
            ev.media = media.x_photo(rng, ev.id)
        elif "video" in line.extra:
            ev.media = media.x_video(rng, ev.id)
        if ev.media and ev.text is not None:
            ev.text += f" https://t.co/{media._sig(rng, 7)[:10]}"  # X appends the media link to the text
