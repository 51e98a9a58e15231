"""Graph API errors as the platform shapes them: codes, subcodes, `fbtrace_id`, the error body."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from sandbox.wire import Reply


class GraphError(Exception):
    def __init__(self, code: int, message: str, subcode: int | None = None, status: int = 400,
                 type_: str = "OAuthException", transient: bool | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode, self.status, self.type, self.transient = code, message, subcode, status, type_, transient


def fbtrace() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii").rstrip("=").replace("/", "_").replace("+", "-")[:23]


def error_body(err: GraphError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": err.message, "type": err.type, "code": err.code}
    if err.subcode is not None:
        body["error_subcode"] = err.subcode
    if err.transient is not None:
        body["is_transient"] = err.transient
    body["fbtrace_id"] = fbtrace()
    return {"error": body}


def error_reply(err: GraphError) -> Reply:
    return Reply(err.status, error_body(err))


def not_found(obj: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported get request. Object with ID '{obj}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation.",
        subcode=33,
        type_="GraphMethodException",
    )


def expired_token_error(now: float) -> GraphError:
    stamp = time.strftime("%A, %d-%b-%y %H:%M:%S", time.gmtime(now - 3600))
    return GraphError(190, f"Error validating access token: Session has expired on {stamp} UTC. The current time is "
                      f"{time.strftime('%A, %d-%b-%y %H:%M:%S', time.gmtime(now))} UTC.", subcode=463)


def rate_error(platform: str | None) -> GraphError:
    if platform == "instagram":
        return GraphError(80002, "(#80002) There have been too many calls to this Instagram account. Wait a bit and try again. "
                          "For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.", transient=True)
    if platform == "messenger":
        return GraphError(80006, "(#80006) There have been too many messenger api calls to this Page account. Wait a bit and "
                          "try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.", transient=True)
    return GraphError(32, "(#32) Page request limit reached", transient=True)


def server_error(status: int) -> GraphError:
    if status == 503:
        return GraphError(2, "Service temporarily unavailable", status=503, transient=True)
    return GraphError(1, "An unknown error has occurred. Please retry your request later.", status=status, transient=True)
