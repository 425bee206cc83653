"""JSON views of pipeline state for the debug server. Private key material never leaves here."""

from __future__ import annotations

from typing import Any

from xds.resources import SHORT_TYPE_NAMES
from xds.snapshot import Snapshot

_SECRET_KEYS = frozenset(
    {"privateKey", "private_key", "inlineBytes", "inline_bytes", "inlineString", "inline_string"}
)
REDACTED = "<redacted>"


def redact(value: Any, inside_secret: bool = False) -> Any:
    """Drop inline data under any private-key field; file paths stay (they are not secrets)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("privateKey", "private_key"):
                out[key] = redact(item, inside_secret=True)
            elif inside_secret and key in _SECRET_KEYS:
                out[key] = REDACTED
            else:
                out[key] = redact(item, inside_secret)
        return out
    if isinstance(value, list):
        return [redact(item, inside_secret) for item in value]
    return value


def render_snapshot(
    snapshot: Snapshot, type_filter: str | None = None, name_filter: str | None = None
) -> dict[str, Any]:
    """Every resource as JSON, by type; `type_filter` takes a type URL or its short name."""
    types: dict[str, Any] = {}
    for type_url, typed in snapshot.by_type.items():
        short = SHORT_TYPE_NAMES.get(type_url, type_url)
        if type_filter and type_filter not in (type_url, short):
            continue
        resources = {
            name: {"version": resource.version, "resource": redact(resource.message.to_dict())}
            for name, resource in typed.resources.items()
            if not name_filter or name == name_filter
        }
        types[short] = {"type_url": type_url, "version": typed.version, "resources": resources}
    return {
        "versions": {SHORT_TYPE_NAMES.get(t, t): v for t, v in snapshot.versions().items()},
        "types": types,
    }
