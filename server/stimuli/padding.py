"""Pad an encoded image to an exact byte size without changing its pixels.

File size leaks answers: a unit's most activating image is often the busier one, so it
compresses worse (the larger query was the right one in 16 of 24 main trials). Serving every
image of a session at one size removes that signal. PNG gets a private ancillary chunk
before IEND, JPEG comment segments after SOI; decoders skip both. Other formats (WebP) are
returned unpadded: `pad_to` says so by returning them unchanged.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary (a), private (d), reserved (D), safe to copy (d): every decoder ignores it.
PNG_PAD_CHUNK = b"paDd"
PNG_CHUNK_OVERHEAD = 12  # length, type, CRC
JPEG_SEGMENT_OVERHEAD = 4  # marker, length
JPEG_MAX_SEGMENT_DATA = 65533
# A target at least this far above the largest file can always be reached exactly.
MIN_PAD = 16


def can_pad(data: bytes) -> bool:
    return data.startswith((PNG_SIGNATURE, b"\xff\xd8"))


def pad_to(data: bytes, size: int) -> bytes:
    """`data` grown to exactly `size` bytes (needs size - len(data) >= MIN_PAD)."""
    missing = size - len(data)
    if missing < MIN_PAD or not can_pad(data):
        return data
    if data.startswith(PNG_SIGNATURE):
        return _pad_png(data, missing)
    return _pad_jpeg(data, missing)


def _pad_png(data: bytes, missing: int) -> bytes:
    filler = b"\x00" * (missing - PNG_CHUNK_OVERHEAD)
    chunk = (
        struct.pack(">I", len(filler))
        + PNG_PAD_CHUNK
        + filler
        + struct.pack(">I", zlib.crc32(PNG_PAD_CHUNK + filler))
    )
    iend = data.rindex(b"IEND") - 4  # the IEND chunk starts with its length field
    return data[:iend] + chunk + data[iend:]


def _pad_jpeg(data: bytes, missing: int) -> bytes:
    segments = []
    while missing > 0:
        take = min(missing, JPEG_MAX_SEGMENT_DATA + JPEG_SEGMENT_OVERHEAD)
        if 0 < missing - take < JPEG_SEGMENT_OVERHEAD:  # leave enough for one more segment
            take -= JPEG_SEGMENT_OVERHEAD
        length = take - 2  # the length field counts itself, not the marker
        segments.append(b"\xff\xfe" + struct.pack(">H", length) + b"\x00" * (length - 2))
        missing -= take
    return data[:2] + b"".join(segments) + data[2:]
