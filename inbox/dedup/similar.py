"""Rule 5: near-identical text from the same person, after Indonesian chat normalization.

Pure comparisons over the page's candidates (`inbox.dedup.candidates`): in another thread
(`similar_elsewhere`: a new ticket flagged as a possible duplicate) or in the same thread
(`repeated`: stored as a repeat of the earlier message). A display name alone is not enough:
complaints are alike ("akun saya diblokir") and so are names.
"""

from __future__ import annotations

from rapidfuzz import fuzz

from connectors.base import InboundMessage
from inbox.dedup.state import REPEAT_LOOKBACK, Candidates, Said
from inbox.dedup.identity import MIN_RAW_CHARS, MIN_SIMILAR_CHARS, ContactInfo, normalize_text


def similar_elsewhere(cands: Candidates, msg: InboundMessage, contact: ContactInfo, own_key: int) -> tuple[int, float, str] | None:
    """The best other ticket with a near-identical recent message of the same person: (ticket key, score, why)."""
    text = normalize_text(msg.text)
    if len(text) < MIN_SIMILAR_CHARS:
        return None
    threshold = cands.settings.dedup.similarity_threshold
    best: tuple[int, float, str] | None = None
    seen: set[int] = set()
    for k in contact.keys():
        for cand in cands.recent.get(k, ()):
            if id(cand) in seen:
                continue
            seen.add(id(cand))
            if cand.ticket_key == own_key or abs(cand.sent_at - msg.sent_at) > cands.sim_window:
                continue
            why = contact.same_person(cand.contact, names=False)
            if not why:
                continue
            cand_text = cand.text
            if len(cand_text) < MIN_SIMILAR_CHARS:
                continue
            score = fuzz.ratio(text, cand_text, score_cutoff=threshold)
            if score and (best is None or score > best[1]):
                best = (cands.resolve(cand.ticket_key) or cand.ticket_key, score, why)
    return best


def repeated(cands: Candidates, msg: InboundMessage, conv_id: int) -> tuple[Said, float] | None:
    """The earlier customer message of this thread that `msg` repeats, and the score; None when none.

    One of the thread's last REPEAT_LOOKBACK customer messages before it, within the window, newest
    first (a customer repeats what they just said); on a tie the older one."""
    earlier = cands.said.get(conv_id)
    raw = msg.text
    # Below MIN_RAW_CHARS no text is MIN_SIMILAR_CHARS long, even normalized (the usual "kak??").
    if not earlier or raw is None or len(raw) < MIN_RAW_CHARS:
        return None
    sent = msg.sent_at
    lo = sent - cands.sim_window
    same_raw_counts = len(raw) >= MIN_SIMILAR_CHARS
    text: str | None = None
    threshold = cands.settings.dedup.similarity_threshold
    best: Said | None = None
    best_score = 0.0
    looked = 0
    for said in reversed(earlier):
        said_at = said.sent_at
        if said_at > sent:
            continue
        if said_at < lo or looked == REPEAT_LOOKBACK:
            break
        looked += 1
        if same_raw_counts and said.raw_text == raw:
            score = 100.0  # sent again as it was: no need to normalize
        else:
            if text is None:
                text = normalize_text(raw)
            if len(text) < MIN_SIMILAR_CHARS:
                continue
            cand = said.text
            if len(cand) < MIN_SIMILAR_CHARS:
                continue
            score = 100.0 if cand == text else fuzz.ratio(text, cand, score_cutoff=threshold)
        if score and (best is None or score >= best_score):
            best, best_score = said, score
    return None if best is None else (best, best_score)


def repeat_reason(earlier: int | str, score: float) -> str:
    """How a repeat is described; `earlier` is the earlier message's id once it is known."""
    of = f"message {earlier}" if isinstance(earlier, int) else "an earlier message of this thread"
    return f"customer repeated ({score:.0f}%) {of}"
