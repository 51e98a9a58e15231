"""Request dispatch, called from the server's threads: classify, answer, apply faults, log the call.

The control API (`/_sandbox/...`) is answered by the callback `Sandbox.control_handler`
(`sandbox.control.handle_control`, wired in by `sandbox.core`): `sandbox.control` needs no import of
the sandbox it drives, and no module here imports it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sandbox import graph
from sandbox import x as x_api
from sandbox.graph_request import attribute, split
from sandbox.graph_usage import Usage
from sandbox.x_rates import RateLimits
from sandbox.faults import ERROR_KINDS, Fault, FaultBook, break_one_item, duplicate_item, empty_tail, encoded, error_reply, gzip_bomb, loop_back, oversize_body, poisoned_body
from sandbox.server import Outcome
from sandbox.state import Call, LateRequest, State
from sandbox.wire import JSON_GRAPH, JSON_X, Reply, Request

# (sandbox, method, endpoint name, query, body, headers) -> (status, JSON-able payload or text)
ControlHandler = Callable[[Any, str, str, dict[str, str], bytes, dict[str, str]], tuple[int, Any]]


def _created_id(payload: Any) -> str | None:
    """The id of the message a send created, from its answer (Graph: `message_id`; X: `data.dm_event_id`)."""
    if not isinstance(payload, dict):
        return None
    data = payload.get("data")
    found = payload.get("message_id") or (data.get("dm_event_id") if isinstance(data, dict) else None)
    return None if found is None else str(found)


def _ctype(api: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": JSON_X if api == "x" else JSON_GRAPH}


class DispatchMixin:
    """`Sandbox`'s request handling: every API call goes through `dispatch`."""

    state: State
    faults: FaultBook
    usage: Usage
    rates: RateLimits
    timeout_sleep: float
    late_sleep: float
    control_handler: ControlHandler
    _base_url: str
    _late: int
    _late_gen: int
    _late_done: threading.Condition
    _calls: deque[Call]
    _late_log: deque[LateRequest]
    _calls_lock: threading.Lock

    # ── request dispatch (called from server threads) ───────────────────────────────────────
    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Outcome:
        if path.startswith("/_sandbox/"):
            return self._control(method, path, query, headers, body)
        arrived = self.state.now()  # the call log records when the call arrived, not when it was answered
        req = Request(method, path, query, headers, body, self._base_url)
        api, account = self._classify(req)
        fault = self.faults.take(method, path, account)
        reply: Reply | None = None
        if fault is not None and fault.kind == "late":
            delay = fault.options.get("delay")
            return self._late_answer(api, req, method, path, query, account, arrived, None if delay is None else float(delay))
        if fault is None or fault.after_effect or fault.kind not in (*ERROR_KINDS, "drop"):
            reply = self._answer(api, req)
        standing = self.faults.standing(method, path, account)
        poisons = [f for f in standing if f.kind == "poison"]
        if poisons and reply is not None and reply.raw is None:
            body = poisoned_body(reply.payload, poisons)
            if body is not None:
                reply.raw = body
        outcome = self._apply(api, req, account, fault, reply)
        for f in standing:
            if f.kind == "header":
                outcome.headers = {k: v for k, v in outcome.headers.items() if k.lower() != str(f.options["name"]).lower()}
                outcome.headers[str(f.options["name"])] = str(f.options.get("value") or "")
        self._log(method, path, query, account, 0 if outcome.drop else outcome.status, arrived, fault.kind if fault else None)
        return outcome

    def _late_answer(self, api: str, req: Request, method: str, path: str, query: dict[str, str], account: str | None,
                     arrived: float, delay: float | None) -> Outcome:
        """Accepted now; carried out (a send: delivered, its echo in the thread) only after
        `late_sleep` (or the fault's own delay, or `release_late()`), and answered then — to a
        client that has usually given up. Recorded in `late_requests` (complete once `wait_late()`
        returns): when it arrived, how long it was to wait, and when it was carried out."""
        record = LateRequest(method, path, account, arrived, self.late_sleep if delay is None else delay)
        with self._calls_lock:
            self._late_log.append(record)
        with self._late_done:
            self._late += 1
            gen = self._late_gen
            released = self._late_done.wait_for(lambda: self._late_gen != gen, timeout=record.delay)
        try:
            reply = self._answer(api, req)
            with self._calls_lock:
                record.carried_out = self.state.now()
                record.released = released
                record.status = reply.status
                record.message_id = _created_id(reply.payload)
        finally:
            with self._late_done:
                self._late -= 1
                self._late_done.notify_all()
        self._log(method, path, query, account, reply.status, arrived, "late")
        return Outcome(reply.status, reply.body(), reply.headers)

    @property
    def late_requests(self) -> list[LateRequest]:
        """Every request a `late` fault held back, in arrival order (copies: one still waiting has
        `carried_out` None)."""
        with self._calls_lock:
            return [replace(r) for r in self._late_log]

    def release_late(self) -> None:
        """Carry out every late request waiting now (a test decides when the platform catches up)."""
        with self._late_done:
            self._late_gen += 1
            self._late_done.notify_all()

    def wait_late(self, timeout: float = 60.0) -> bool:
        """Wait until every late request accepted so far has been carried out; False on timeout."""
        with self._late_done:
            return self._late_done.wait_for(lambda: self._late == 0, timeout)

    def _classify(self, req: Request) -> tuple[str, str | None]:
        if req.path.startswith("/x/"):
            return "x", "tokoshop-x"
        ctx = split(req)
        if ctx is None:
            return "none", None
        with self.state.lock:
            acc = attribute(self.state, ctx)
        return "graph", acc.spec.name if acc else None

    def _answer(self, api: str, req: Request) -> Reply:
        with self.state.lock:
            if api == "x":
                reply = x_api.handle(self.state, req, [p for p in req.path.split("/") if p][1:], self.rates)
                reply.headers.setdefault("content-type", JSON_X)
                return reply
            ctx = split(req)
            if ctx is None:
                return Reply(404, {"error": {"message": "Unknown path", "type": "GraphMethodException", "code": 100}},
                             {"content-type": JSON_GRAPH})
            reply = graph.handle(self.state, ctx, self.usage)
            reply.headers.setdefault("content-type", JSON_GRAPH)
            reply.headers.setdefault("facebook-api-version", ctx.version)
            return reply

    def _apply(self, api: str, req: Request, account: str | None, fault: Fault | None, reply: Reply | None) -> Outcome:
        if fault is None:
            assert reply is not None
            return Outcome(reply.status, reply.body(), reply.headers)
        kind = fault.kind
        if kind == "drop":
            return Outcome(0, drop=True)
        if kind in ERROR_KINDS:
            with self.state.lock:
                err = error_reply(kind, api, req, self.state.meta.get(account or ""), self.state.now(), self.usage, self.rates)
            return Outcome(err.status, err.body(), err.headers)
        assert reply is not None
        if kind == "timeout":
            return Outcome(reply.status, reply.body(), reply.headers, delay=self.timeout_sleep)
        if kind == "malformed":
            return Outcome(200, b'{"data": [{"id": "1", "created_time": <html>Internal proxy error</html>', _ctype(api, reply.headers))
        if kind == "truncated":
            body = reply.body()
            return Outcome(reply.status, body[: len(body) // 2], reply.headers)
        if kind == "slow":
            return Outcome(reply.status, reply.body(), reply.headers, trickle=float(fault.options.get("interval") or 0.5),
                           step=int(fault.options.get("step") or 1))
        if kind == "cut":
            return Outcome(reply.status, reply.body(), reply.headers, cut=True)
        if kind == "bad_item":
            break_one_item(api, reply.payload)
            return Outcome(reply.status, reply.body(), reply.headers)
        if kind == "answer":  # the answer replaced whole: any status, body and content type
            headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
            if fault.options.get("content_type") is not None:
                headers["content-type"] = str(fault.options["content_type"])
            return Outcome(int(fault.options.get("status") or 200), str(fault.options.get("body") or "").encode("utf-8", "surrogatepass"), headers)
        if kind == "encoded":
            body, header = encoded(reply.body(), str(fault.options.get("encoding") or "gzip"))
            return Outcome(reply.status, body, {**reply.headers, "content-encoding": header})
        if kind == "duplicate":
            duplicate_item(reply.payload)
            return Outcome(reply.status, reply.body(), reply.headers)
        if kind == "empty_tail":
            tail = empty_tail(api, req, reply.payload)
            if tail is reply.payload:
                return Outcome(reply.status, reply.body(), reply.headers)
            return Outcome(200, json.dumps(tail).encode(), reply.headers)  # its made-up cursors are no real ones
        if kind == "loop":
            loop_back(api, req, reply.payload)
            return Outcome(reply.status, reply.body(), reply.headers)
        size = int(fault.options.get("size") or 16 * 1024 * 1024)
        if kind == "oversize":
            return Outcome(reply.status, oversize_body(reply.payload, size), reply.headers)
        if kind == "gzip_bomb":
            return Outcome(reply.status, gzip_bomb(reply.payload, size), {**reply.headers, "content-encoding": "gzip"})
        raise AssertionError(kind)

    def _log(self, method: str, path: str, query: dict[str, str], account: str | None, status: int, at: float,
             fault: str | None = None) -> None:
        with self._calls_lock:
            self._calls.append(Call(method, path, dict(query), account, status, at, fault))

    # ── control API ─────────────────────────────────────────────────────────────────────────
    def _control(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Outcome:
        status, payload = self.control_handler(self, method, path.removeprefix("/_sandbox/"), query, body, headers)
        if isinstance(payload, str):
            return Outcome(status, payload.encode(), {"content-type": "text/plain; charset=utf-8"})
        return Outcome(status, json.dumps(payload, ensure_ascii=False, default=str).encode(), {"content-type": JSON_X})
