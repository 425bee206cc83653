"""The protobuf wire reader every request goes through: fields by offset, and strict about bad bytes."""

from __future__ import annotations

import pytest

from xds.shared import wire


def test_fields_reads_every_wire_type_by_offset():
    message = (
        wire.string(1, "kafka-a")
        + wire.uint32(2, 300)
        + wire.key(3, wire.I64)
        + bytes(range(8))
        + wire.key(4, wire.I32)
        + bytes(range(4))
    )
    found = list(wire.fields(message))
    assert [(number, wire_type) for number, wire_type, _, _ in found] == [
        (1, wire.LENGTH_DELIMITED),
        (2, wire.VARINT),
        (3, wire.I64),
        (4, wire.I32),
    ]
    _, _, start, end = found[0]
    assert message[start:end] == b"kafka-a"
    assert found[1][2] == 300
    assert message[found[2][2] : found[2][3]] == bytes(range(8))
    assert message[found[3][2] : found[3][3]] == bytes(range(4))


def test_fields_reads_a_nested_message_in_place():
    inner = wire.string(1, "node-1") + wire.string(2, "kafka-clients")
    message = wire.string(4, "type") + wire.length_delimited(2, inner)
    _, _, start, end = [field for field in wire.fields(message) if field[0] == 2][0]
    assert [message[a:b] for _, _, a, b in wire.fields(message, start, end)] == [b"node-1", b"kafka-clients"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (wire.string(1, "abc")[:-1], "runs past the end"),
        (b"\x08", "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x00\x00", "field number 0"),
        (wire.key(1, 3), "unsupported wire type 3"),
        (wire.key(1, wire.I64) + b"\x00" * 7, "is truncated"),
        (wire.key(1, wire.I32) + b"\x00" * 3, "is truncated"),
    ],
    ids=["short-bytes", "short-varint", "long-varint", "field-zero", "group", "short-i64", "short-i32"],
)
def test_fields_refuses_malformed_bytes_naming_what(data, problem):
    with pytest.raises(wire.WireFormatError, match=problem) as raised:
        list(wire.fields(data, what="DiscoveryRequest"))
    assert str(raised.value).startswith("DiscoveryRequest: ")


def test_optional_fields_leave_out_the_zero_value():
    assert wire.optional_string(1, "") == b"" and wire.optional(1, b"") == b""
    assert wire.optional_string(1, "a") == wire.string(1, "a") == wire.optional(1, b"a")
