
import json
from datetime import datetime, timezone
from tests.store.test_loop_stateful import SQLiteLoop, _Draws
from tests.store.test_sync import readable_ids
ALL = {"tokoshop-x", "tokoshop-fb", "tokoshop-ig"}

def dump(state, tag):
    cur = state.rows("SELECT s.cursor FROM sync_state s JOIN account a ON a.id=s.account_id WHERE a.name='tokoshop-ig'")
    print("==", tag, "platform now", state.platform_now(), "local now", datetime.now(timezone.utc))
    print("cursor", cur)
    stored = set(state.stored_ids("tokoshop-ig"))
    for t in state.sb.threads("tokoshop-ig"):
        msgs = state.sb.thread_messages("tokoshop-ig", t)
        miss = [m for m in msgs if m["readable"] and m["id"] not in stored]
        if miss:
            print("thread", t[-20:], "n", len(msgs), "last", [ (m["id"][-12:], datetime.fromtimestamp(m["created_ms"]/1000, timezone.utc).isoformat(), m["readable"], m["id"] in stored) for m in msgs[-4:]])

def test_replay():
    state = SQLiteLoop()
    try:
        state.first_sync()
        state.two_syncs(names=({"tokoshop-fb"}, ALL))
        state.platform_fault(account="tokoshop-x", count=2, data=_Draws("/messages"), kind="cut")
        state.token_expires(env="INBOX_SANDBOX_FB_TOKEN")
        state.token_renewed(pick=4427)
        state.customer_message(account="tokoshop-ig", ahead=20, data=_Draws(None, ""), kind=None, late=282, new_thread=False, pick=24020)
        state.customer_message(account="tokoshop-ig", ahead=2_333_664_000, data=_Draws("%s %d {0} {ticket}%s %d {0} {ticket}", "\\u0000'4tú>®\\"), kind="image", late=189, new_thread=False, pick=28724)
        state.sync_killed(delay=0.0)
        state.agent_reply(body="\x18\U000aae91²\x1d\U0007ff67³\\u0000", pick=531)
        state.two_syncs(names=(ALL, ALL))
        state.agent_reply(body="\U00068c96v5=¤Ó\x05-\U000cc72eE7𤵪", pick=3160)
        state.local_clock_step(seconds=90)
        state.local_clock_step(seconds=-600)
        state.agent_reply(body="\U000f8af7¿O\U000de417²¼E5\U000b3670\to.INV/20261120/MPL/3817265540", pick=123)
        state.customer_message(account="tokoshop-ig", ahead=0, data=_Draws(None, ""), kind=None, late=255, new_thread=False, pick=735)
        state.two_syncs(names=(ALL, {"tokoshop-ig"}))
        state.token_expires(env="INBOX_SANDBOX_FB_TOKEN")
        state.customer_burst(account="tokoshop-fb", n=11, pick=154)
        state.customer_burst(account="tokoshop-x", n=20, pick=249)
        state.agent_reply(body="", pick=681)
        dump(state, "before settle")
        try:
            state.settle()
        finally:
            dump(state, "after settle")
    finally:
        state.close()
