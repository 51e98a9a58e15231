"""Times as scripts and people read them.

JSON output is UTC in one format, `YYYY-MM-DDTHH:MM:SSZ` (`json_time`), whatever the command.
Human output is in the team's zone (the config's `timezone`, else `$TZ`, else the machine's local
zone) with the zone shown (`2026-11-25 15:00 WIB`), so nobody reads a time 7 hours off.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo
from pathlib import Path

JSON_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def json_time(value: datetime | None) -> str | None:
    """The one JSON time format: UTC, whole seconds, `Z`. A naive value is UTC (as the store keeps it)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(JSON_FORMAT)


def check_zone(name: str) -> str:
    """`name` if it is an IANA time zone this machine knows, else ValueError saying so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Asia/Jakarta', or 'UTC')") from None
    return name


def resolve_zone(name: str | None = None) -> tzinfo:
    """The zone for human output: `name` (the config's `timezone`), else `$TZ`, else the machine's."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    tz_env = os.environ.get("TZ")
    # $TZ beats the machine's zone; a POSIX TZ string ("WIB-7") is left to the C library below.
    for candidate in (name, tz_env.lstrip(":") if tz_env else _machine_zone_name()):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    local = datetime.now().astimezone().tzinfo  # a fixed offset at least, named as the C library names it
    return local or timezone.utc


def _machine_zone_name() -> str | None:
    """The IANA name behind /etc/localtime (Debian also writes it to /etc/timezone)."""
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    try:
        return Path("/etc/timezone").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def zone_label(value: datetime) -> str:
    """`WIB`, `UTC`; the offset (`+07:00`) where the zone has no letters for its name."""
    name = value.tzname() or ""
    if name and name.isalpha():
        return name
    offset = value.utcoffset()
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local_time(value: datetime | None, zone: tzinfo, fmt: str = "%Y-%m-%d %H:%M", *, missing: str = "–") -> str:
    """`value` in `zone`, formatted, with the zone shown: `2026-11-25 15:00 WIB`."""
    if value is None:
        return missing
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    here = value.astimezone(zone)
    return f"{here.strftime(fmt)} {zone_label(here)}"
