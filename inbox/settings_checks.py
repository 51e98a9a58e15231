"""The config's value checks (secret-looking literals, database URL schemes, https base URLs) and
each validation error as one readable line: `key: what was expected (got ...)`.

No pydantic models here: inbox.settings declares them and runs these checks in its validators.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

SECRET_KEYS = ("access_token", "consumer_key", "consumer_secret", "access_token_secret", "app_secret")

# A token-looking literal (Graph tokens start with EAA / IGQ / IGAA; X app tokens with AAAA).
_TOKEN_LIKE = re.compile(r"^(EAA|IGQ|IGAA|AAAA)[A-Za-z0-9]{10,}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# The database URLs inbox can open: SQLite (built in) and PostgreSQL through psycopg 3.
_SUPPORTED_DATABASE = re.compile(r"^(sqlite(\+pysqlite)?|postgresql(\+psycopg)?)://")


def unsupported_database(value: str) -> str | None:
    """Why a `database` value cannot be used, or None. The URL itself is never echoed (it may
    carry a password): only its scheme."""
    if not value.strip():
        return "empty: expected a SQLite file path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    if _SUPPORTED_DATABASE.match(value) and value.split("://", 1)[0].startswith("sqlite"):
        path = value.split("://", 1)[1].split("?", 1)[0].removeprefix("/")
        if path in ("", ":memory:"):  # every command is its own process: an in-memory store is lost at its exit
            return "a SQLite URL needs a file (sqlite:///PATH); without one the store would be in memory and lost when the command ends"
    if "://" not in value or _SUPPORTED_DATABASE.match(value):
        return None
    scheme = value.split("://", 1)[0]
    return (f"unsupported database URL scheme '{scheme}': expected a SQLite file path, sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB")


def looks_like_secret(value: str) -> bool:
    """True for anything that is not plausibly an environment variable name."""
    if not ENV_NAME.match(value) or _TOKEN_LIKE.match(value):
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


def _message(err: dict[str, Any], root: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "missing":
        return "missing key"
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(err, root)
    expected = _TYPE_WORDS.get(kind)
    if expected:
        return f"expected {expected}"
    if kind == "enum":
        return f"expected one of {err.get('ctx', {}).get('expected', '')}"
    return msg.removeprefix("Value error, ")


def _did_you_mean(err: dict[str, Any], root: Any) -> str:
    import difflib

    loc = tuple(err.get("loc", ()))
    if not loc or not isinstance(loc[-1], str):
        return ""
    model: Any = root
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


def problem(err: Any, data: dict[str, Any], root: Any) -> str:
    """One validation error as `key: what was expected (got ...)`; `root` is the model validated
    (the Settings class), whose fields the did-you-mean hint searches."""
    where = _loc(tuple(err.get("loc", ())), data)
    given = err.get("input")
    detail = _message(err, root)
    last = err.get("loc", ("",))[-1] if err.get("loc") else ""
    # Never echo what may be a secret: tokens, or a database URL with its password.
    secretish = isinstance(last, str) and (last.endswith("_env") or last in SECRET_KEYS or last == "database")
    if err.get("type") not in ("missing", "extra_forbidden") and not secretish and not isinstance(given, (dict, list)) and given is not None and repr(given) not in detail:
        detail += f" (got {given!r})"
    return f"{where + ': ' if where else ''}{detail}"

