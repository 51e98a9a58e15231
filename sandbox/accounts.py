"""The sandbox's brand accounts: their table, tokens, environment and the inbox config that points at them."""

from __future__ import annotations

import json

from sandbox.state import (
    FB_TOKEN,
    IG_DIRECT_ID,
    IG_DIRECT_USERNAME,
    IG_FB_ID,
    IG_FB_USERNAME,
    IG_TOKEN,
    PAGE_ID,
    PAGE_NAME,
    X_ACCESS_TOKEN,
    X_ACCESS_TOKEN_SECRET,
    X_CONSUMER_KEY,
    X_CONSUMER_SECRET,
    X_NAME,
    X_TOKEN,
    X_USER_ID,
    X_USERNAME,
    MetaAccount,
    Person,
    SandboxAccount,
    State,
    XAccount,
)

GRAPH_VERSION = "v23.0"
# Which API host each token variable is for (the Page token serves Messenger and Instagram via the Page).
TOKEN_HOSTS = {"INBOX_SANDBOX_FB_TOKEN": "facebook", "INBOX_SANDBOX_IG_TOKEN": "instagram", "INBOX_SANDBOX_X_TOKEN": "x"}
X_OAUTH1_ENV = {
    "INBOX_SANDBOX_X_CONSUMER_KEY": X_CONSUMER_KEY,
    "INBOX_SANDBOX_X_CONSUMER_SECRET": X_CONSUMER_SECRET,
    "INBOX_SANDBOX_X_ACCESS_TOKEN": X_ACCESS_TOKEN,
    "INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET": X_ACCESS_TOKEN_SECRET,
}
# The keys the sandbox signs its webhooks with (public test values, like its tokens). X signs with
# the app's consumer secret, the same one OAuth 1.0a uses.
WEBHOOK_ENV = {
    "INBOX_SANDBOX_META_APP_SECRET": "sandbox-meta-app-secret-0104920378912345",
    "INBOX_SANDBOX_META_VERIFY_TOKEN": "sandbox-verify-token",
}
WEBHOOK_TOML = (
    "[webhooks]\n"
    'meta_app_secret_env = "INBOX_SANDBOX_META_APP_SECRET"\n'
    'meta_verify_token_env = "INBOX_SANDBOX_META_VERIFY_TOKEN"\n'
    'x_consumer_secret_env = "INBOX_SANDBOX_X_CONSUMER_SECRET"\n'
)
ACCOUNT_TABLE = (
    # name, channel, platform id, page id, flavour, base path, token env, token
    ("tokoshop-fb", "facebook", PAGE_ID, PAGE_ID, None, f"/facebook/{GRAPH_VERSION}", "INBOX_SANDBOX_FB_TOKEN", FB_TOKEN),
    ("tokoshop-ig", "instagram", IG_FB_ID, PAGE_ID, "facebook_login", f"/facebook/{GRAPH_VERSION}", "INBOX_SANDBOX_FB_TOKEN", FB_TOKEN),
    ("tokoshop-x", "x", X_USER_ID, None, "oauth2", "/x", "INBOX_SANDBOX_X_TOKEN", X_TOKEN),
    ("tokoshop-ig-direct", "instagram", IG_DIRECT_ID, None, "instagram_login", f"/instagram/{GRAPH_VERSION}", "INBOX_SANDBOX_IG_TOKEN", IG_TOKEN),
)


class AccountsMixin:
    """`Sandbox`'s accounts: the state's accounts built from `ACCOUNT_TABLE`, their environment and config."""

    state: State
    _base_url: str

    # ── accounts & config ───────────────────────────────────────────────────────────────────
    def _make_accounts(self) -> None:
        st = self.state
        for name, channel, pid, page_id, flavour, path, env, token in ACCOUNT_TABLE:
            spec = SandboxAccount(name, channel, pid, page_id, flavour, env, token, path)
            if channel == "x":
                st.x[name] = XAccount(spec, Person(X_USER_ID, X_NAME, X_USERNAME))
            elif channel == "facebook":
                brand = Person(PAGE_ID, PAGE_NAME, None, f"{PAGE_ID}@facebook.com")
                st.meta[name] = MetaAccount(spec, brand, "messenger", "facebook")
            else:
                host = "instagram" if flavour == "instagram_login" else "facebook"
                brand = Person(pid, "TokoShop Indonesia", IG_DIRECT_USERNAME if host == "instagram" else IG_FB_USERNAME)
                st.meta[name] = MetaAccount(spec, brand, "instagram", host)

    @property
    def accounts(self) -> dict[str, SandboxAccount]:
        out = {}
        with self.state.lock:
            tokens = dict(self.state.tokens)
        for name, channel, pid, page_id, flavour, path, env, _token in ACCOUNT_TABLE:
            out[name] = SandboxAccount(name, channel, pid, page_id, flavour, env, tokens[TOKEN_HOSTS[env]], self._base_url + path)
        return out

    def env(self) -> dict[str, str]:
        """The environment variables the generated config names (tokens), plus the X OAuth 1.0a ones."""
        with self.state.lock:
            out = {env: self.state.tokens[host] for env, host in TOKEN_HOSTS.items()}
        out.update(X_OAUTH1_ENV)
        out.update(WEBHOOK_ENV)
        return out

    def config_toml(self, database: str = "sqlite:///inbox.db", include_ig_login: bool = False,
                    include_x_oauth1: bool = False, webhooks: bool = False) -> str:
        """A complete inbox config pointing every account at this sandbox (secrets by env-var name);
        with `webhooks`, the [webhooks] section naming the keys the sandbox signs with."""
        q = json.dumps  # TOML basic strings accept JSON string escapes
        lines = [
            "# inbox configuration for the local sandbox (generated). Tokens come from the environment:",
            "# " + " ".join(f"{k}=..." for k in ("INBOX_SANDBOX_FB_TOKEN", "INBOX_SANDBOX_IG_TOKEN", "INBOX_SANDBOX_X_TOKEN")),
            f"database = {q(database)}",
            "",
        ]
        if webhooks:
            lines += [WEBHOOK_TOML]
        for acc in self.accounts.values():
            if acc.name == "tokoshop-ig-direct" and not include_ig_login:
                continue
            lines += ["[[accounts]]", f"name = {q(acc.name)}", f"channel = {q(acc.channel)}"]
            if acc.channel == "facebook":
                lines.append(f"page_id = {q(acc.platform_id)}")
            elif acc.channel == "instagram":
                lines.append(f"ig_user_id = {q(acc.platform_id)}")
                if acc.page_id:
                    lines.append(f"page_id = {q(acc.page_id)}")
            else:
                lines.append(f"user_id = {q(acc.platform_id)}")
            if acc.flavour:
                lines.append(f"flavour = {q(acc.flavour)}")
            lines += [f"base_url = {q(acc.base_url)}", f"access_token_env = {q(acc.token_env)}"]
            if acc.channel in ("facebook", "instagram"):
                lines.append("calls_per_second = 50  # the sandbox is not held to Meta's 2 calls/s")
            lines.append("")
        if include_x_oauth1:
            x = self.accounts["tokoshop-x"]
            lines += [
                "[[accounts]]", 'name = "tokoshop-x-oauth1"', 'channel = "x"', f"user_id = {q(x.platform_id)}",
                'flavour = "oauth1"', f"base_url = {q(x.base_url)}",
                'consumer_key_env = "INBOX_SANDBOX_X_CONSUMER_KEY"', 'consumer_secret_env = "INBOX_SANDBOX_X_CONSUMER_SECRET"',
                'access_token_env = "INBOX_SANDBOX_X_ACCESS_TOKEN"', 'access_token_secret_env = "INBOX_SANDBOX_X_ACCESS_TOKEN_SECRET"',
                "",
            ]
        return "\n".join(lines)
