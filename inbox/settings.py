"""Typed settings from a TOML file.

Found in this order: `--config PATH`, `$INBOX_CONFIG`, `./inbox.toml`, `~/.config/inbox/config.toml`.
Secrets are never written in the file: each is the *name* of an environment variable.
Every problem becomes one `ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.channels import channel_info
from connectors.enums import Channel
from inbox.errors import ConfigError
from inbox.settings_checks import ENV_NAME, SECRET_KEYS, check_base_url, looks_like_secret, problem, unsupported_database

if TYPE_CHECKING:
    from connectors.base import AccountSpec

DEFAULT_ORDER_PATTERN = r"\bINV/\d{8}/[A-Z]{2,5}/\d{6,12}\b"

# Inside a token (once the whitespace around it is stripped): whitespace or control characters.
_INNER_JUNK = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
ENV_KEYS = ("access_token_env", "access_token_secret_env", "consumer_key_env", "consumer_secret_env")
DATABASE_URL_ENV = "INBOX_DATABASE_URL"  # overrides `database`, so a server password can stay out of the file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountSettings(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
    channel: Channel
    # Platform ids: Facebook `page_id`; Instagram `ig_user_id` (+ `page_id` for facebook_login); X `user_id`.
    page_id: str | None = None
    ig_user_id: str | None = None
    user_id: str | None = None
    flavour: Literal["facebook_login", "instagram_login", "oauth2", "oauth1"] | None = None
    base_url: str | None = None
    access_token_env: str | None = None
    access_token_secret_env: str | None = None  # X OAuth 1.0a
    consumer_key_env: str | None = None  # X OAuth 1.0a
    consumer_secret_env: str | None = None  # X OAuth 1.0a
    interval_seconds: Annotated[int, Field(ge=10)] | None = None
    enabled: bool = True
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    # Client-side pacing. Meta allows 2 conversation calls/s per Page or IG account, so that is the
    # default there; X budgets are read from its headers instead. Raise it only for the sandbox.
    calls_per_second: Annotated[float, Field(gt=0, le=1000)] | None = None
    # X bills each DM event a lookup returns (USD; pay-per-use): the estimate `inbox accounts` shows.
    x_cost_per_read: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.01

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"'{key}' must not be written in the config file; put it in an environment "
                        f"variable and name that variable with '{key}_env'"
                    )
        return data

    @field_validator(*ENV_KEYS)
    @classmethod
    def _env_name_only(cls, value: str | None) -> str | None:
        if value is not None and looks_like_secret(value):
            # Never echo the value: it is probably the token itself.
            raise ValueError(
                "expected the name of an environment variable, got what looks like a secret value; "
                "remove it from the file, export it (e.g. INBOX_FB_TOKEN=...) and write that variable's name here"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is not None:
            check_base_url(value)
        return value

    @model_validator(mode="after")
    def _check_ids(self) -> AccountSettings:
        info = channel_info(self.channel)
        if "x_cost_per_read" in self.model_fields_set and self.channel != Channel.X:
            raise ValueError("only x accounts take 'x_cost_per_read' (X bills each DM event read)")
        names = [f.name for f in info.flavours]
        if self.flavour is not None and self.flavour not in names:
            if names == [None]:
                raise ValueError(f"{self.channel.value} accounts take no 'flavour'")
            raise ValueError(f"{self.channel.value} 'flavour' must be " + " or ".join(f"'{n}'" for n in names))
        for key in info.flavour(self.flavour).id_keys:
            if not getattr(self, key):
                raise ValueError(f"a {self.channel.value} account needs '{key}'")
        for env_key in self.secret_env_keys():
            if not getattr(self, env_key):
                raise ValueError(f"a {self.channel.value} account needs '{env_key}' (the name of an environment variable)")
        return self

    @property
    def resolved_flavour(self) -> str | None:
        """The flavour in the file, else the channel's default (None for a channel with one way)."""
        return self.flavour or channel_info(self.channel).default_flavour

    @property
    def platform_id(self) -> str:
        return getattr(self, channel_info(self.channel).id_key) or ""

    def secret_env_keys(self) -> list[str]:
        return [f"{key}_env" for key in channel_info(self.channel).secret_keys(self.resolved_flavour)]

    def padded_secrets(self, environ: dict[str, str] | None = None) -> list[str]:
        """The secret variables whose value has whitespace around it (a secrets file's trailing newline):
        `to_spec` strips it, `config check` says so."""
        env = os.environ if environ is None else environ
        padded = []
        for env_key in self.secret_env_keys():
            value = env.get(getattr(self, env_key)) or ""
            if value.strip() and value != value.strip():
                padded.append(getattr(self, env_key))
        return padded

    def resolved_calls_per_second(self) -> float | None:
        if self.calls_per_second is not None:
            return self.calls_per_second
        return channel_info(self.channel).calls_per_second

    def resolved_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return channel_info(self.channel).base_url(self.resolved_flavour)

    def to_spec(self, environ: dict[str, str] | None = None) -> AccountSpec:
        """Resolve secrets from the environment. A missing variable is a ConfigError naming it."""
        from connectors.base import AccountSpec
        from connectors.redact import register_secret

        env = os.environ if environ is None else environ
        secrets: dict[str, str] = {}
        for env_key in self.secret_env_keys():
            var = getattr(self, env_key)
            raw = env.get(var)
            register_secret(raw)  # before any check: no message may quote it
            value = (raw or "").strip()
            if not value:
                raise ConfigError(
                    f"account '{self.name}': environment variable {var} is not set "
                    f"(it should hold the {env_key.removesuffix('_env').replace('_', ' ')})"
                )
            if _INNER_JUNK.search(value):
                raise ConfigError(
                    f"account '{self.name}': environment variable {var} has whitespace or control characters inside "
                    "its value, which no token has; export it again with the token alone"
                )
            secrets[env_key.removesuffix("_env")] = value
        flavour = self.resolved_flavour
        calls_per_second = self.resolved_calls_per_second()
        return AccountSpec(
            name=self.name,
            channel=self.channel,
            account_id=self.platform_id,
            base_url=self.resolved_base_url(),
            secrets=secrets,
            page_id=self.page_id,
            flavour=flavour,
            timeout=self.timeout_seconds,
            min_interval=1.0 / calls_per_second if calls_per_second else 0.0,
        )


class SyncSettings(_Strict):
    interval_seconds: Annotated[int, Field(ge=10)] = 120
    jitter_seconds: Annotated[int, Field(ge=0)] = 15
    overlap_seconds: Annotated[int, Field(ge=0)] = 600
    concurrency: Annotated[int, Field(ge=1, le=32)] = 3
    lease_seconds: Annotated[int, Field(ge=10)] = 300
    processes: bool = True
    # How long a page writer waits for the writers' lock (SQLite lock file, PostgreSQL advisory lock), then exit 6.
    writer_lock_timeout_seconds: Annotated[float, Field(gt=0)] = 60
    # Decoded size of one platform response; a larger one is a platform error (retried later).
    max_response_mb: Annotated[float, Field(gt=0, le=1024)] = 8
    # How far ahead of the platform's clock a message time may be before it counts as misdated.
    clock_skew_seconds: Annotated[int, Field(ge=0, le=86400)] = 300


class DedupSettings(_Strict):
    reopen_days: Annotated[float, Field(ge=0)] = 7
    order_patterns: list[str] = [DEFAULT_ORDER_PATTERN]
    similarity_threshold: Annotated[float, Field(ge=0, le=100)] = 90
    similarity_window_hours: Annotated[float, Field(gt=0)] = 24
    order_window_days: Annotated[float, Field(gt=0)] = 7
    repeat_raises_priority: bool = True

    @field_validator("order_patterns")
    @classmethod
    def _compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
        return patterns


class SlaSettings(_Strict):
    first_response_minutes: dict[str, Annotated[int, Field(gt=0)]] = {
        "urgent": 30,
        "high": 60,
        "normal": 240,
        "low": 1440,
    }
    escalation_days: Annotated[float, Field(gt=0)] = 3


class TriageRule(_Strict):
    category: str
    priority: Literal["urgent", "high", "normal", "low"] = "normal"
    keywords: list[str]


DEFAULT_RULES = [
    TriageRule(category="fraud", priority="urgent", keywords=["penipuan", "fraud", "scam", "tipu", "hacked", "diretas"]),
    TriageRule(category="blocked_account", priority="high", keywords=["akun diblokir", "blocked account", "account blocked", "diblokir", "suspended", "dinonaktifkan"]),
    TriageRule(category="payment", priority="high", keywords=["pembayaran", "payment", "gagal bayar", "failed payment", "charged twice", "double charge", "saldo terpotong", "transfer"]),
    TriageRule(category="refund", priority="high", keywords=["refund", "pengembalian dana", "dana kembali", "money back", "uang kembali"]),
    TriageRule(category="cancellation", priority="normal", keywords=["pembatalan", "cancel", "batalkan", "batal"]),
    TriageRule(category="shipping", priority="normal", keywords=["pengiriman", "shipping", "delivery", "resi", "kurir", "paket", "belum sampai", "not arrived", "tracking"]),
    TriageRule(category="seller_dispute", priority="normal", keywords=["penjual", "seller", "komplain", "dispute", "barang rusak", "damaged", "tidak sesuai"]),
]


class ReplySettings(_Strict):
    human_agent_tag: bool = True  # the app has Meta's Human Agent feature (24 h to 7 d replies)
    confirm: bool = True
    # A `sending` reply untouched this long has a stopped sender (its process is fenced out).
    lease_seconds: Annotated[float, Field(gt=0)] = 300
    # An `unknown` reply is `failed` only after a full sync starting this long after the attempt
    # found no echo: time for a slow platform to show the message.
    settle_after_seconds: Annotated[float, Field(ge=0)] = 600


class WebhookSettings(_Strict):
    """`[webhooks]`: the keys that prove a delivery came from the platform, as variable names."""

    meta_app_secret_env: str | None = None  # X-Hub-Signature-256 key (the Meta app secret)
    meta_verify_token_env: str | None = None  # the subscription handshake's verify token
    x_consumer_secret_env: str | None = None  # CRC and x-twitter-webhooks-signature key
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024

    @field_validator("meta_app_secret_env", "meta_verify_token_env", "x_consumer_secret_env")
    @classmethod
    def _env_name_only(cls, value: str | None) -> str | None:
        if value is not None and (looks_like_secret(value) or not ENV_NAME.match(value)):
            raise ValueError("expected the name of an environment variable (letters, digits, '_'), not a secret value")
        return value

    def required_env(self, channels: set[Channel]) -> list[tuple[str, str]]:
        """(key, variable) of each secret `inbox serve` needs for accounts on these channels."""
        needed: list[tuple[str, str]] = []
        if any(channel_info(c).webhook_object for c in channels):  # Meta's webhooks: Messenger and Instagram
            needed += [("meta_app_secret_env", self.meta_app_secret_env or ""), ("meta_verify_token_env", self.meta_verify_token_env or "")]
        if Channel.X in channels:
            needed.append(("x_consumer_secret_env", self.x_consumer_secret_env or ""))
        return needed

    def missing(self, channels: set[Channel], environ: dict[str, str] | None = None) -> list[str]:
        """One line per secret that is not configured or whose variable is empty."""
        env = os.environ if environ is None else environ
        problems = []
        for key, var in self.required_env(channels):
            if not var:
                problems.append(f"[webhooks] {key} is not set (the name of the environment variable holding it)")
            elif not (env.get(var) or "").strip():
                problems.append(f"environment variable {var} is not set ([webhooks] {key})")
        return problems


class Settings(_Strict):
    database: str = "sqlite:///inbox.db"
    agent: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Human output's zone (IANA name); unset: $TZ, else the machine's. JSON output is always UTC.
    timezone: str | None = None
    sync: SyncSettings = SyncSettings()
    dedup: DedupSettings = DedupSettings()
    sla: SlaSettings = SlaSettings()
    rules: list[TriageRule] = DEFAULT_RULES
    replies: ReplySettings = ReplySettings()
    templates: dict[str, str] = {}
    webhooks: WebhookSettings = WebhookSettings()
    accounts: list[AccountSettings] = []
    source: str | None = Field(default=None, exclude=True)  # the file it came from

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        problem = unsupported_database(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        from inbox.timefmt import check_zone

        return None if value is None else check_zone(value)

    @field_validator("accounts")
    @classmethod
    def _unique_names(cls, accounts: list[AccountSettings]) -> list[AccountSettings]:
        seen: set[str] = set()
        for acc in accounts:
            if acc.name in seen:
                raise ValueError(f"duplicate account name '{acc.name}'")
            seen.add(acc.name)
        return accounts

    def account(self, name: str) -> AccountSettings:
        for acc in self.accounts:
            if acc.name == name:
                return acc
        from inbox.errors import NotFoundError

        known = ", ".join(a.name for a in self.accounts) or "none configured"
        raise NotFoundError(f"no account named '{name}' in {self.source or 'the config'} (known: {known})")

    def spec_for(self, account: AccountSettings, environ: dict[str, str] | None = None) -> AccountSpec:
        """The account's connector spec, with the sync settings that bound what a platform sends."""
        from dataclasses import replace

        return replace(
            account.to_spec(environ),
            max_response_bytes=int(self.sync.max_response_mb * 1024 * 1024),
            clock_skew_seconds=float(self.sync.clock_skew_seconds),
        )

    def database_url(self) -> str:
        """A SQLAlchemy URL; a bare path means a SQLite file, relative to the config file.

        `$INBOX_DATABASE_URL`, when set, wins over the file (keeps a server password out of it).
        """
        db = os.environ.get(DATABASE_URL_ENV) or self.database
        if os.environ.get(DATABASE_URL_ENV):
            problem = unsupported_database(db)
            if problem:
                raise ConfigError(f"${DATABASE_URL_ENV}: {problem}")
        if "://" in db:
            if db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
                rel = db.removeprefix("sqlite:///")
                if rel.startswith("~"):  # a home directory, as in a bare path
                    return "sqlite:///" + str(Path(rel).expanduser())
                if rel and rel != ":memory:" and self.source:
                    return "sqlite:///" + str((Path(self.source).parent / rel).resolve())
            return db
        path = Path(db).expanduser()
        if not path.is_absolute() and self.source:
            path = Path(self.source).parent / path
        return "sqlite:///" + str(path.resolve())


def interval_for(settings: Settings, account: AccountSettings) -> int:
    """Seconds between an account's scheduled syncs: its own interval, else `sync.interval_seconds`."""
    return account.interval_seconds or settings.sync.interval_seconds


def candidate_paths(explicit: str | os.PathLike[str] | None) -> list[Path]:
    if explicit is not None and not str(explicit).strip():  # `-c "$CFG"` with CFG unset: never another file
        raise ConfigError("--config is empty: give the path of a config file")
    if explicit:
        return [Path(explicit).expanduser()]
    if os.environ.get("INBOX_CONFIG"):
        return [Path(os.environ["INBOX_CONFIG"]).expanduser()]
    return [Path("inbox.toml"), Path("~/.config/inbox/config.toml").expanduser()]


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    paths = candidate_paths(explicit)
    if explicit or os.environ.get("INBOX_CONFIG"):
        return paths[0]  # named explicitly: must exist (load reports it)
    return next((p for p in paths if p.is_file()), None)


def parse_settings(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = tuple(f"{source}: {problem(err, data, Settings)}" for err in exc.errors())
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, problems=problems) from None


def load_settings(explicit: str | os.PathLike[str] | None = None) -> Settings:
    """Find, read and validate the config; with no file anywhere, the defaults (no accounts)."""
    path = find_config(explicit)
    if path is None:
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config PATH or set INBOX_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.__class__.__name__}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_settings(data, str(path))
