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

from connectors.enums import Channel
from inbox.errors import ConfigError

if TYPE_CHECKING:
    from connectors.base import AccountSpec

GRAPH_VERSION = "v23.0"
DEFAULT_BASE_URLS = {
    ("facebook", None): f"https://graph.facebook.com/{GRAPH_VERSION}",
    ("instagram", "facebook_login"): f"https://graph.facebook.com/{GRAPH_VERSION}",
    ("instagram", "instagram_login"): f"https://graph.instagram.com/{GRAPH_VERSION}",
    ("x", None): "https://api.x.com",
}
DEFAULT_ORDER_PATTERN = r"\bINV/\d{8}/[A-Z]{2,5}/\d{6,12}\b"
SECRET_KEYS = ("access_token", "consumer_key", "consumer_secret", "access_token_secret", "app_secret")

# A token-looking literal (Graph tokens start with EAA / IGQ / IGAA; X app tokens with AAAA).
_TOKEN_LIKE = re.compile(r"^(EAA|IGQ|IGAA|AAAA)[A-Za-z0-9]{10,}")
# Inside a token (once the whitespace around it is stripped): whitespace or control characters.
_INNER_JUNK = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ENV_KEYS = ("access_token_env", "access_token_secret_env", "consumer_key_env", "consumer_secret_env")
DATABASE_URL_ENV = "INBOX_DATABASE_URL"  # overrides `database`, so a server password can stay out of the file


# The database URLs inbox can open: SQLite (built in) and PostgreSQL through psycopg 3.
_SUPPORTED_DATABASE = re.compile(r"^(sqlite(\+pysqlite)?|postgresql(\+psycopg)?)://")


def unsupported_database(value: str) -> str | None:
    """Why a `database` value cannot be used, or None. The URL itself is never echoed (it may
    carry a password): only its scheme."""
    if "://" not in value or _SUPPORTED_DATABASE.match(value):
        return None
    scheme = value.split("://", 1)[0]
    return (f"unsupported database URL scheme '{scheme}': expected a SQLite file path, sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB")


def _looks_like_secret(value: str) -> bool:
    """True for anything that is not plausibly an environment variable name."""
    if not _ENV_NAME.match(value) or _TOKEN_LIKE.match(value):
        return True
    # Variable names are upper case by convention; a long mixed-case run of letters and digits is a token.
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return mixed and len(value) >= 24


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: a name or address that never leaves this machine."""
    import ipaddress

    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> None:
    """A platform base URL must be https: tokens travel with every call. Plain http only to loopback
    (the sandbox, a local proxy)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError("expected an https:// URL") from None
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and is_loopback_host(host):
        return
    if parts.scheme == "http":
        raise ValueError(f"plain http to {host} would send the token unencrypted: use https:// (http is allowed only to 127.0.0.1, ::1 or localhost)")
    raise ValueError("expected an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)")


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
        if value is not None and _looks_like_secret(value):
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
        needs = {
            Channel.FACEBOOK: ["page_id"],
            Channel.INSTAGRAM: ["ig_user_id"] + (["page_id"] if self.instagram_flavour == "facebook_login" else []),
            Channel.X: ["user_id"],
        }[self.channel]
        for key in needs:
            if not getattr(self, key):
                raise ValueError(f"a {self.channel.value} account needs '{key}'")
        if self.channel is Channel.INSTAGRAM and self.flavour not in (None, "facebook_login", "instagram_login"):
            raise ValueError("instagram 'flavour' must be 'facebook_login' or 'instagram_login'")
        if self.channel is Channel.X and self.flavour not in (None, "oauth2", "oauth1"):
            raise ValueError("x 'flavour' must be 'oauth2' or 'oauth1'")
        if self.channel is Channel.FACEBOOK and self.flavour is not None:
            raise ValueError("facebook accounts take no 'flavour'")
        for env_key in self.secret_env_keys():
            if not getattr(self, env_key):
                raise ValueError(f"a {self.channel.value} account needs '{env_key}' (the name of an environment variable)")
        return self

    @property
    def instagram_flavour(self) -> str:
        return self.flavour or "facebook_login"

    @property
    def x_flavour(self) -> str:
        return self.flavour or "oauth2"

    @property
    def platform_id(self) -> str:
        return {Channel.FACEBOOK: self.page_id, Channel.INSTAGRAM: self.ig_user_id, Channel.X: self.user_id}[
            self.channel
        ] or ""

    def secret_env_keys(self) -> list[str]:
        if self.channel is Channel.X and self.x_flavour == "oauth1":
            return ["consumer_key_env", "consumer_secret_env", "access_token_env", "access_token_secret_env"]
        return ["access_token_env"]

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
        return 2.0 if self.channel in (Channel.FACEBOOK, Channel.INSTAGRAM) else None

    def resolved_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        flavour = self.instagram_flavour if self.channel is Channel.INSTAGRAM else None
        return DEFAULT_BASE_URLS[(self.channel.value, flavour)]

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
        flavour = None
        if self.channel is Channel.INSTAGRAM:
            flavour = self.instagram_flavour
        elif self.channel is Channel.X:
            flavour = self.x_flavour
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
        if value is not None and (_looks_like_secret(value) or not _ENV_NAME.match(value)):
            raise ValueError("expected the name of an environment variable (letters, digits, '_'), not a secret value")
        return value

    def required_env(self, channels: set[Channel]) -> list[tuple[str, str]]:
        """(key, variable) of each secret `inbox serve` needs for accounts on these channels."""
        needed: list[tuple[str, str]] = []
        if channels & {Channel.FACEBOOK, Channel.INSTAGRAM}:
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
            if db.startswith("sqlite:///") and not db.startswith("sqlite:////") and self.source:
                rel = db.removeprefix("sqlite:///")
                if rel and rel != ":memory:":
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


def _loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Turn a pydantic location into a TOML key path, naming accounts by name."""
    parts: list[str] = []
    node: Any = data
    for i, item in enumerate(loc):
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] = f"{parts[-1]}[{item}]" + (f" ({name})" if name else "") if parts else f"[{item}]"
        else:
            parts.append(str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts)


_TYPE_WORDS = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list (array)", "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table",
}


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "missing":
        return "missing key"
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(err)
    expected = _TYPE_WORDS.get(kind)
    if expected:
        return f"expected {expected}"
    if kind == "enum":
        return f"expected one of {err.get('ctx', {}).get('expected', '')}"
    return msg.removeprefix("Value error, ")


def _did_you_mean(err: dict[str, Any]) -> str:
    import difflib

    loc = tuple(err.get("loc", ()))
    if not loc or not isinstance(loc[-1], str):
        return ""
    model: Any = Settings
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = model.model_fields.get(item) if hasattr(model, "model_fields") else None
        if field is None:
            return ""
        ann = field.annotation
        # list[AccountSettings] / TriageRule lists: the item model
        args = getattr(ann, "__args__", ())
        model = args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else ann
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    known = [k for k in model.model_fields if k != "source"]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _problem(err: Any, data: dict[str, Any]) -> str:
    """One validation error as `key: what was expected (got ...)`."""
    where = _loc(tuple(err.get("loc", ())), data)
    given = err.get("input")
    detail = _message(err)
    last = err.get("loc", ("",))[-1] if err.get("loc") else ""
    # Never echo what may be a secret: tokens, or a database URL with its password.
    secretish = isinstance(last, str) and (last.endswith("_env") or last in SECRET_KEYS or last == "database")
    if err.get("type") not in ("missing", "extra_forbidden") and not secretish and not isinstance(given, (dict, list)) and given is not None:
        detail += f" (got {given!r})"
    return f"{where + ': ' if where else ''}{detail}"


def parse_settings(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = tuple(f"{source}: {_problem(err, data)}" for err in exc.errors())
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
