"""The protobuf wire format, minimal: a writer for the resources and responses kafka-xds sends, and a
strict reader for the requests it receives.

Writing: varint fields (uint32, int64, enums) and length-delimited fields (strings, bytes,
sub-messages). Every field function returns the encoded bytes of one field, key included, so a
message is the concatenation of its fields in the order they are written. `optional` and
`optional_string` leave a proto3 field out at its zero value; the others always write it.

Reading: `fields` walks one message's fields by offset (no copies), checking every tag and length.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT = 0
I64 = 1
LENGTH_DELIMITED = 2
I32 = 5

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


def optional(field: int, body: bytes) -> bytes:
    """A proto3 bytes or string field outside a oneof: the empty value is not written."""
    return length_delimited(field, body) if body else b""


def optional_string(field: int, text: str) -> bytes:
    """A proto3 string field outside a oneof: the empty string is not written."""
    return length_delimited(field, text.encode("utf-8")) if text else b""


# -- reading ----------------------------------------------------------------------------------------


class WireFormatError(ValueError):
    """Bytes that are not a well-formed protobuf message; the text says what and where."""


def read_varint(data: bytes | memoryview, position: int, end: int, what: str = "message") -> tuple[int, int]:
    """The varint at `position` (before `end`) and the position after it."""
    if position < end:
        byte = data[position]
        if byte < 0x80:
            return byte, position + 1  # most tags and lengths: one byte
    result = shift = 0
    while True:
        if position >= end:
            raise WireFormatError(f"{what}: truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise WireFormatError(f"{what}: varint longer than 10 bytes")


def fields(
    data: bytes | memoryview, start: int = 0, end: int | None = None, what: str = "message"
) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field of the message in
    data[start:end]: a varint's value (and where it ends), or where a length-delimited or fixed-size
    field's bytes start and end. Strict: a bad tag, a truncated field or a deprecated group raises
    WireFormatError naming `what`."""
    position = start
    end = len(data) if end is None else end
    while position < end:
        tag, position = read_varint(data, position, end, what)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireFormatError(f"{what}: field number 0 at byte {position - start}")
        if wire_type == LENGTH_DELIMITED:
            length, position = read_varint(data, position, end, what)
            if position + length > end:
                raise WireFormatError(f"{what}: field {number} runs past the end of the message")
            yield number, wire_type, position, position + length
            position += length
        elif wire_type == VARINT:
            value, position = read_varint(data, position, end, what)
            yield number, wire_type, value, position
        elif wire_type in (I64, I32):
            size = 8 if wire_type == I64 else 4
            if position + size > end:
                raise WireFormatError(f"{what}: field {number} is truncated")
            yield number, wire_type, position, position + size
            position += size
        else:  # groups are long deprecated and never used by xDS; 6 and 7 do not exist
            raise WireFormatError(f"{what}: field {number} has unsupported wire type {wire_type}")
