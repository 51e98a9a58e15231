"""Instagram professional-account DMs over the Graph API, in both flavours.

- `facebook_login` (default): through the linked Facebook Page on graph.facebook.com with the Page
  token: `GET /{page-id}/conversations?platform=instagram`, `POST /{page-id}/messages`.
- `instagram_login`: graph.instagram.com with an Instagram user token and no Page:
  `GET /me/conversations?platform=instagram`, `POST /me/messages` (`/me` is the token's account).

Replies are limited to 1,000 UTF-8 bytes. Everything else lives in `connectors.graph`.

References: https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/conversations-api ,
https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message
"""

from __future__ import annotations

from connectors.channels import INSTAGRAM
from connectors.graph import MetaConnector


class InstagramConnector(MetaConnector):
    info = INSTAGRAM
    channel = INSTAGRAM.channel
    platform = "instagram"

    @property
    def node(self) -> str:
        if self.spec.flavour == "instagram_login":
            return "me"
        return self.spec.page_id or self.spec.account_id
