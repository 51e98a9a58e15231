"""Facebook Page conversations (Messenger) over the Graph API, with a Page access token.

Reads `GET /{page-id}/conversations?platform=messenger` and sends with `POST /{page-id}/messages`.
Replies are limited to 2,000 characters. Everything else lives in `connectors.graph`.

References: https://developers.facebook.com/docs/messenger-platform/conversations ,
https://developers.facebook.com/docs/messenger-platform/reference/send-api
"""

from __future__ import annotations

from connectors.channels import FACEBOOK
from connectors.graph import MetaConnector


class FacebookConnector(MetaConnector):
    info = FACEBOOK
    channel = FACEBOOK.channel
    platform = "messenger"
