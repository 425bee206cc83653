"""A minimal protobuf wire-format writer: varints, length-delimited fields, nested messages.

Only what the resource encoders need: varint fields (uint32, int64, enums) and length-delimited
fields (strings, bytes, sub-messages). Every field function returns the encoded bytes of one field,
key included, so a message is the concatenation of its fields in the order they are written.
Presence is the caller's decision: these functions always write the field they are given.
"""

from __future__ import annotations

VARINT = 0
LENGTH_DELIMITED = 2

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


def varint(value: int) -> bytes:
    """An unsigned base-128 varint, least significant group first."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0 or value > _UINT64_MAX:
        raise ValueError(f"varint out of range (0 to 2**64-1): {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_KEY_TABLE_SIZE = 64  # the keys of fields 0-63, computed once
_VARINT_KEYS = tuple(varint(field << 3 | VARINT) for field in range(_KEY_TABLE_SIZE))
_LENGTH_DELIMITED_KEYS = tuple(varint(field << 3 | LENGTH_DELIMITED) for field in range(_KEY_TABLE_SIZE))


def key(field: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    if field < _KEY_TABLE_SIZE and wire_type in (VARINT, LENGTH_DELIMITED):
        return (_VARINT_KEYS if wire_type == VARINT else _LENGTH_DELIMITED_KEYS)[field]
    return varint(field << 3 | wire_type)


def int64(field: int, value: int) -> bytes:
    """An int64 (or enum) field: a negative value is its 64-bit two's complement, ten bytes long."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"field {field}: int64 out of range (-2**63 to 2**63-1): {value}")
    return key(field, VARINT) + varint(value & _UINT64_MAX)


def uint32(field: int, value: int) -> bytes:
    """A uint32 field; values outside the type are an error, as the typed model makes them."""
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"field {field}: uint32 out of range (0 to 2**32-1): {value}")
    return key(field, VARINT) + varint(value)


def length_delimited(field: int, body: bytes) -> bytes:
    """A bytes field or a nested message (its already encoded body)."""
    # The common cases inline (a small field number, a body under 128 bytes): this runs for every
    # nested message of every resource.
    size = len(body)
    return (
        (_LENGTH_DELIMITED_KEYS[field] if field < _KEY_TABLE_SIZE else varint(field << 3 | LENGTH_DELIMITED))
        + (_ONE_BYTE[size] if size < 0x80 else varint(size))
        + body
    )


def string(field: int, text: str) -> bytes:
    """A string field, UTF-8 encoded."""
    return length_delimited(field, text.encode("utf-8"))
