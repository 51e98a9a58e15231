"""Graph API field-expansion syntax: `id,from,messages.limit(5){id,message,attachments{image_data}}`."""

from __future__ import annotations

from dataclasses import dataclass, field


class FieldSyntaxError(ValueError):
    pass


@dataclass
class FieldSpec:
    sub: dict[str, FieldSpec] | None = None  # nested `{...}` selection
    mods: dict[str, str] = field(default_factory=dict)  # `.limit(5)` style modifiers


def parse_fields(text: str | None) -> dict[str, FieldSpec]:
    """Parse a `fields` value into an ordered mapping name -> FieldSpec."""
    if not text:
        return {}
    text = "".join(text.split())
    out, pos = _parse_list(text, 0, closing=None)
    if pos != len(text):
        raise FieldSyntaxError(f"unexpected '{text[pos]}' at {pos}")
    return out


def _parse_list(text: str, pos: int, closing: str | None) -> tuple[dict[str, FieldSpec], int]:
    out: dict[str, FieldSpec] = {}
    while pos < len(text):
        if closing and text[pos] == closing:
            return out, pos
        name, spec, pos = _parse_one(text, pos)
        if name:
            out[name] = spec
        if pos < len(text) and text[pos] == ",":
            pos += 1
    if closing:
        raise FieldSyntaxError("unbalanced braces in fields")
    return out, pos


def _parse_one(text: str, pos: int) -> tuple[str, FieldSpec, int]:
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] in "_"):
        pos += 1
    name = text[start:pos].strip()
    spec = FieldSpec()
    while pos < len(text) and text[pos] == ".":
        pos += 1
        mstart = pos
        while pos < len(text) and text[pos] != "(":
            pos += 1
        mod = text[mstart:pos]
        end = text.find(")", pos)
        if end < 0:
            raise FieldSyntaxError("unbalanced parentheses in fields")
        spec.mods[mod] = text[pos + 1 : end]
        pos = end + 1
    if pos < len(text) and text[pos] == "{":
        spec.sub, pos = _parse_list(text, pos + 1, closing="}")
        pos += 1
    if pos < len(text) and text[pos] not in ",}":
        raise FieldSyntaxError(f"unexpected '{text[pos]}' in fields")
    return name, spec, pos
