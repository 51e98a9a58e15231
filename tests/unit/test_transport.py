"""HttpSession's policy over a `MockTransport`: retries, backoff, send safety and redaction, no socket."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import requests

from connectors.errors import DeliveryUnknownError, MalformedResponseError, NotSentError, ResponseTooLargeError, ServerError
from connectors.http import HttpSession, RetryPolicy, decode_json, raise_for
from connectors.transport import MockTransport, mock_response

FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.05, max_sleep=1.0)
BASE = "https://graph.example/v23.0"


def _session(handler: Callable[[requests.PreparedRequest], requests.Response], slept: list[float] | None = None,
             **kw: object) -> tuple[HttpSession, MockTransport]:
    transport = MockTransport(handler)
    sleeps = slept if slept is not None else []
    session = HttpSession(account="mock", timeout=2.0, policy=kw.pop("policy", FAST), sleep=sleeps.append,  # type: ignore[arg-type]
                          transport=transport, **kw)  # type: ignore[arg-type]
    return session, transport


def _answers(*responses: requests.Response | Exception) -> Callable[[requests.PreparedRequest], requests.Response]:
    queue: Iterator[requests.Response | Exception] = iter(responses)

    def handler(request: requests.PreparedRequest) -> requests.Response:
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def test_a_read_is_retried_on_5xx_with_backoff_then_answers() -> None:
    slept: list[float] = []
    session, transport = _session(_answers(mock_response(503, json={}), mock_response(502, json={}),
                                           mock_response(200, json={"data": []})), slept)
    response = session.get(BASE + "/me/conversations", params={"limit": 1})
    assert response.status_code == 200 and decode_json(response) == {"data": []}
    assert len(transport.requests) == 3 and len(slept) == 2
    assert all(0 < s <= FAST.backoff_cap for s in slept)
    assert transport.requests[0].url == BASE + "/me/conversations?limit=1"


def test_retries_stop_at_the_policy_and_the_last_answer_is_returned() -> None:
    session, transport = _session(lambda request: mock_response(500, json={"error": {"message": "down"}}))
    response = session.get(BASE + "/me")
    assert response.status_code == 500 and len(transport.requests) == FAST.max_retries + 1
    with pytest.raises(ServerError):
        raise_for(response)


def test_a_short_retry_after_is_waited_for() -> None:
    slept: list[float] = []
    session, transport = _session(_answers(mock_response(429, headers={"Retry-After": "0.2"}, json={"title": "Too Many"}),
                                           mock_response(200, json={"ok": True})), slept)
    assert session.get("https://api.x.example/2/dm_events").status_code == 200
    assert len(transport.requests) == 2 and len(slept) == 1 and 0 < slept[0] <= 0.2


def test_a_read_that_keeps_failing_on_the_wire_is_a_server_error() -> None:
    session, transport = _session(lambda request: (_ for _ in ()).throw(requests.ConnectionError("reset")))
    with pytest.raises(ServerError, match="connection failed"):
        session.get(BASE + "/me")
    assert len(transport.requests) == FAST.max_retries + 1


def test_a_send_that_left_and_failed_is_delivery_unknown_and_never_retried() -> None:
    session, transport = _session(_answers(requests.ReadTimeout("read timed out")))
    with pytest.raises(DeliveryUnknownError, match="may have been delivered"):
        session.post(BASE + "/me/messages", json={"message": {"text": "hi"}})
    assert len(transport.requests) == 1


def test_a_send_that_never_left_is_retried() -> None:
    slept: list[float] = []
    session, transport = _session(_answers(requests.ConnectTimeout("connect timed out"), mock_response(200, json={"message_id": "m_1"})), slept)
    response = session.post(BASE + "/me/messages", json={"message": {"text": "hi"}})
    assert decode_json(response) == {"message_id": "m_1"} and len(transport.requests) == 2 and len(slept) == 1


def test_a_truncated_body_is_malformed_for_a_read_and_unknown_for_a_send() -> None:
    session, _ = _session(lambda request: (_ for _ in ()).throw(requests.exceptions.ChunkedEncodingError("cut")))
    with pytest.raises(MalformedResponseError, match="truncated"):
        session.get(BASE + "/t_1/messages")
    with pytest.raises(DeliveryUnknownError, match="broke off"):
        session.post(BASE + "/me/messages", json={})


def test_a_body_over_the_cap_is_not_read() -> None:
    session, _ = _session(lambda request: mock_response(200, body=b"x" * 5000), max_body=1024)
    with pytest.raises(ResponseTooLargeError):
        session.get(BASE + "/me")
    with pytest.raises(DeliveryUnknownError, match="too large"):
        session.post(BASE + "/me/messages", json={})


def test_an_invalid_header_is_not_sent_and_the_value_is_not_quoted() -> None:
    session, transport = _session(lambda request: mock_response(200, json={}))
    session.headers["Authorization"] = "Bearer EAAsecret-token-value\n"
    with pytest.raises(NotSentError) as info:
        session.post(BASE + "/me/messages", json={})
    assert transport.requests == [] and "EAAsecret" not in str(info.value)


def test_debug_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    session, _ = _session(lambda request: mock_response(200, json={"data": []}))
    with caplog.at_level(logging.DEBUG, logger="connectors.http"):
        session.get(BASE + "/me/conversations?access_token=EAAtopsecret123456&after=abc")
    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.http"]
    assert lines and all("EAAtopsecret123456" not in line for line in lines)
    assert any("access_token=****" in line for line in lines)
