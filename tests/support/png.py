"""Reading a PNG (as Chromium's screenshots write them: 8-bit RGB or RGBA, not interlaced) with the
standard library only, to assert on what a browser drew."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Image", "read_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Image:
    width: int
    height: int
    rows: tuple[bytes, ...]  # per row, RGB triples
    # A pixel: image.pixel(x, y) -> (r, g, b)

    def pixel(self, x: int, y: int) -> RGB:
        row = self.rows[y]
        return row[3 * x], row[3 * x + 1], row[3 * x + 2]

    def count(self, colour: RGB, tolerance: int = 12, box: tuple[int, int, int, int] | None = None) -> int:
        """Pixels within `tolerance` of `colour` per channel, in `box` (left, top, right, bottom)."""
        left, top, right, bottom = box or (0, 0, self.width, self.height)
        found = 0
        for y in range(top, bottom):
            row = self.rows[y]
            for x in range(left, right):
                if all(abs(row[3 * x + channel] - colour[channel]) <= tolerance for channel in range(3)):
                    found += 1
        return found


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return up if distances[1] <= distances[2] else up_left


def read_png(path: Path) -> Image:
    data = path.read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path} is not a PNG")
    offset, idat, header = len(_SIGNATURE), bytearray(), None
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path} has no IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(
            f"{path}: only 8-bit RGB/RGBA, not interlaced (got {depth}, {colour_type}, {interlace})"
        )
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, up_left)) & 0xFF
        previous = line
        if channels == 4:
            rows.append(bytes(b for i, b in enumerate(line) if i % 4 != 3))
        else:
            rows.append(bytes(line))
    return Image(width, height, tuple(rows))
