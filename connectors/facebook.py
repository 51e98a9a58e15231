"""Facebook Page conversations (Messenger) over the Graph API, with a Page access token.

Reads `GET /{page-id}/conversations?platform=messenger` and sends with `POST /{page-id}/messages`.
Replies are limited to 2,000 characters. Everything else lives in `connectors.graph`.

References: https://developers.facebook.com/docs/messenger-platform/conversations ,
https://developers.facebook.com/docs/messenger-platform/reference/send-api
"""

from __future__ import annotations

from connectors.enums import Channel
from connectors.graph import MetaConnector


class FacebookConnector(MetaConnector):
    channel = Channel.FACEBOOK
    platform = "messenger"
    text_limit = 2000
