"""Schemathesis hooks for the API test: the API's binary fields are images, which a
JSON Schema cannot say, so `format: binary` values are generated as real PNGs (small,
of random size and colour) instead of arbitrary bytes."""

import struct
import zlib

import schemathesis
from hypothesis import strategies as st


def png(width, height, rgb):
    row = b"\x00" + bytes(rgb) * width

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


colour = st.tuples(*[st.integers(0, 255)] * 3)
schemathesis.openapi.format("binary", st.builds(png, st.integers(1, 64), st.integers(1, 64), colour))
