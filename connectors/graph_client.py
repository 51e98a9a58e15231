"""The Graph API client of one account: base URL, token header, usage budget, rate headers.

`connectors.graph` runs the polling pass and the Send API on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import requests

from connectors.base import AccountSpec, RateInfo
from connectors.budget import CallBudget
from connectors.errors import DeliveryUnknownError, MalformedResponseError, NeedsReauthError
from connectors.http import HttpSession, RetryPolicy, decode_json, raise_for
from connectors.redact import register_secret
from connectors.responses import error_in_success, rate_info


_VERSION = re.compile(r"^/v\d+(?:\.\d+)?(?=/|$)")  # a Graph link's leading /vNN.0


class GraphClient:
    """Graph API calls for one account. The token travels in the Authorization header, never the URL."""

    def __init__(self, spec: AccountSpec, *, policy: RetryPolicy | None = None) -> None:
        token = spec.secrets.get("access_token")
        if not token:
            raise NeedsReauthError(f"account '{spec.name}' has no access token", account=spec.name)
        register_secret(token)
        self.account = spec.name
        self.base = spec.base_url.rstrip("/")
        self.session = HttpSession(
            account=spec.name, timeout=spec.timeout, min_interval=spec.min_interval,
            policy=policy or RetryPolicy(max_retries=spec.max_retries), max_body=spec.max_response_bytes,
        )
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.rate: RateInfo | None = None
        self.budget = CallBudget(spec.name, interval=spec.min_interval, sleep=self.session.sleep)

    def url(self, path_or_url: str) -> str:
        """An absolute URL on our base. `paging.next` links lose their `access_token` and are followed
        under our base URL: Graph writes them on its public host (https://graph.facebook.com/vNN.0/...)
        whatever proxy or emulator was called, so a link outside the base keeps only its path after
        the version, put under the base (its path prefix and pinned version)."""
        if not path_or_url.startswith(("http://", "https://")):
            return f"{self.base}/{path_or_url.lstrip('/')}"
        parts = urlparse(path_or_url)
        base = urlparse(self.base)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "access_token"])
        path = parts.path
        root = base.path.rstrip("/")
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not path.startswith(root + "/"):
            path = f"{root}/{_VERSION.sub('', path).lstrip('/')}"
        return urlunparse((base.scheme, base.netloc, path, "", query, ""))

    def _handle(self, response: requests.Response, *, sending: bool) -> Any:
        reported = rate_info(response.headers)
        self.budget.observe(reported)
        self.rate = reported or self.rate
        raise_for(response, sending=sending, account=self.account)
        body = decode_json(response, account=self.account)
        error = error_in_success(body, response, sending=sending, account=self.account)
        if error is not None:
            raise error
        return body

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Any:
        """One read; `BudgetSpentError` instead when it would reach the usage limit (`connectors.budget`)."""
        self.budget.before_call()
        response = self.session.get(self.url(path_or_url), params=dict(params) if params else None)
        return self._handle(response, sending=False)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = self.session.post(self.url(path), json=dict(body))
        try:
            return self._handle(response, sending=True)
        except MalformedResponseError:
            # 2xx but undecodable: the message probably went out, and we do not know its id.
            raise DeliveryUnknownError(f"POST /{path}: the send succeeded but its response was unreadable", account=self.account) from None

    def close(self) -> None:
        self.session.close()


def next_link(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    if isinstance(paging, Mapping) and isinstance(paging.get("next"), str) and paging["next"]:
        return str(paging["next"])
    return None


def after_cursor(edge: Mapping[str, Any]) -> str | None:
    """An edge's `paging.cursors.after`, to read on with our own fields instead of its `next`."""
    paging = edge.get("paging")
    cursors = paging.get("cursors") if isinstance(paging, Mapping) else None
    after = cursors.get("after") if isinstance(cursors, Mapping) else None
    return after if isinstance(after, str) and after and len(after) <= 1024 else None
