"""Byte-level builders for the hostile corpus: PNG chunks, JPEG segments, GIF LZW, RIFF/WebP, BMP, EXIF, ICC.

Encoders (Pillow's included) refuse to write most of what an attacker sends, so these assemble files from
their parts. Each builder writes exactly the fields it is given; nothing here validates, on purpose.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

# ---------------------------------------------------------------------------------------------------- encoders


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.lru_cache(maxsize=8)
def _zero_block() -> bytes:
    # A raw-deflate block of 1 MiB of zeros ending in a full flush. A full flush resets the compressor's
    # history, so the same bytes repeated k times are a valid stream of k MiB of zeros: an arbitrarily large
    # zero stream costs its output size to build, not its (up to gigabytes of) input.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)


@functools.lru_cache(maxsize=256)
def zlib_zeros(length: int) -> bytes:
    """A zlib stream (header, deflate, Adler-32) that inflates to ``length`` zero bytes."""
    blocks, rest = divmod(length, 1 << 20)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = _zero_block() * blocks + tail.compress(bytes(rest)) + tail.flush()
    adler = ((length % 65521) << 16) | 1  # Adler-32 of n zeros: a = 1, b = n mod 65521
    return b"\x78\xda" + body + struct.pack(">I", adler)


# -------------------------------------------------------------------------------------------------------- PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_chunk(kind: bytes, payload: bytes, *, crc: int | None = None, length: int | None = None) -> bytes:
    checksum = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload) if length is None else length) + kind + payload + struct.pack(">I", checksum)


def ihdr(width: int, height: int, depth: int = 8, ctype: int = 2, interlace: int = 0) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace))


def png_raw_length(width: int, height: int, depth: int, ctype: int, interlace: int = 0) -> int:
    """Bytes of filtered scanlines (a filter byte per row) the IDAT stream of such an image inflates to."""
    bits = PNG_CHANNELS.get(ctype, 1) * depth
    if not interlace:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in ADAM7:
        pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if pass_width > 0 and pass_height > 0:
            total += pass_height * (1 + (pass_width * bits + 7) // 8)
    return total


def png(
    width: int,
    height: int,
    *,
    depth: int = 8,
    ctype: int = 2,
    interlace: int = 0,
    before: Sequence[bytes] = (),
    idat: bytes | None = None,
    idat_split: int = 0,
    after: Sequence[bytes] = (),
    raw_length: int | None = None,
) -> bytes:
    """A PNG of all-zero pixels: ``before`` chunks between IHDR and IDAT, ``after`` chunks before IEND.

    Args:
        idat: The compressed stream; by default zeros of exactly the length the header implies
            (``raw_length`` overrides that length, to send too much or too little).
        idat_split: Cut the stream into IDAT chunks of this many bytes (0: one chunk).
    """
    if idat is None:
        length = png_raw_length(width, height, depth, ctype, interlace) if raw_length is None else raw_length
        idat = zlib_zeros(length)
    if idat_split:
        idats = b"".join(png_chunk(b"IDAT", idat[i : i + idat_split]) for i in range(0, len(idat), idat_split))
    else:
        idats = png_chunk(b"IDAT", idat)
    return (
        PNG_SIGNATURE
        + ihdr(width, height, depth, ctype, interlace)
        + b"".join(before)
        + idats
        + b"".join(after)
        + png_chunk(b"IEND", b"")
    )


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, payload) of every chunk that parses; stops at the first that does not."""
    chunks = []
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if pos + 12 + length > len(data):
            break
        chunks.append((pos, data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def fctl(seq: int, width: int, height: int, x: int = 0, y: int = 0, dispose: int = 0, blend: int = 0) -> bytes:
    return png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, width, height, x, y, 1, 100, dispose, blend))


def fdat(seq: int, stream: bytes) -> bytes:
    return png_chunk(b"fdAT", struct.pack(">I", seq) + stream)


# ------------------------------------------------------------------------------------------------------- JPEG

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
# Markers without a length field: SOI, EOI, RST0-7, TEM
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


@dataclass(frozen=True)
class Segment:
    """One JPEG marker segment; for SOS, ``payload`` is the header and ``scan`` the entropy-coded data after it."""

    marker: int
    payload: bytes
    scan: bytes = b""

    def to_bytes(self) -> bytes:
        if self.marker in _STANDALONE:
            return bytes((0xFF, self.marker))
        return segment(self.marker, self.payload) + self.scan


def jpeg_segments(data: bytes) -> list[Segment]:
    """Splits a JPEG into segments, stopping at the first thing that is not one (mutants reach here too)."""
    segments = []
    pos = 0
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            segments.append(Segment(marker, b""))
            pos += 2
            if marker == 0xD9:
                break
            continue
        if pos + 4 > len(data):
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        payload = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        scan = b""
        if marker == 0xDA:
            end = pos
            while end + 1 < len(data):
                if data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8)):
                    break
                end += 1
            scan, pos = data[pos:end], end
        segments.append(Segment(marker, payload, scan))
    return segments


def jpeg_join(segments: Iterable[Segment]) -> bytes:
    return b"".join(s.to_bytes() for s in segments)


def sof(marker: int, width: int, height: int, components: Sequence[tuple[int, int, int]], precision: int = 8) -> bytes:
    """A SOFn segment; ``components`` are (id, h<<4|v sampling, quant table)."""
    payload = struct.pack(">BHHB", precision, height, width, len(components))
    payload += b"".join(struct.pack(">BBB", *c) for c in components)
    return segment(marker, payload)


def sos(components: Sequence[tuple[int, int]], ss: int, se: int, ah: int, al: int) -> bytes:
    """A SOS header; ``components`` are (id, dc<<4|ac table)."""
    payload = bytes([len(components)]) + b"".join(bytes(c) for c in components) + bytes((ss, se, ah << 4 | al))
    return segment(0xDA, payload)


def dqt(table: int = 0, value: int = 1) -> bytes:
    return segment(0xDB, bytes([table]) + bytes([value]) * 64)


def dri(interval: int) -> bytes:
    return segment(0xDD, struct.pack(">H", interval))


# -------------------------------------------------------------------------------------------------------- GIF


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.bits = 0

    def write(self, code: int, width: int) -> None:
        self.acc |= code << self.bits
        self.bits += width
        while self.bits >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.bits -= 8

    def getvalue(self) -> bytes:
        return bytes(self.out) + (bytes([self.acc & 0xFF]) if self.bits else b"")


def lzw_encode(pixels: bytes, min_size: int = 8) -> bytes:
    """Plain GIF LZW (clear when the table fills), for small frames of arbitrary content."""
    clear, end = 1 << min_size, (1 << min_size) + 1
    writer = _BitWriter()
    width = min_size + 1
    table = {bytes([i]): i for i in range(clear)}
    next_code = end + 1
    writer.write(clear, width)
    current = b""
    for value in pixels:
        extended = current + bytes([value])
        if extended in table:
            current = extended
            continue
        writer.write(table[current], width)
        if next_code < 4096:
            if next_code >= 1 << width and width < 12:
                width += 1
            table[extended] = next_code
            next_code += 1
        else:
            writer.write(clear, width)
            width, next_code = min_size + 1, end + 1
            table = {bytes([i]): i for i in range(clear)}
        current = bytes([value])
    if current:
        writer.write(table[current], width)
    writer.write(end, width)
    return writer.getvalue()


def lzw_run(count: int, colour: int = 0, min_size: int = 8, *, deferred_clear: bool = False) -> bytes:
    """GIF LZW for ``count`` pixels of one colour, built in O(output) rather than O(pixels).

    Greedy LZW on a run emits strings of length 1, 2, 3, ...; the code of length L is ``end + L - 1``.
    With ``deferred_clear`` the table is never reset once full and the longest string (about 3,800 pixels)
    is repeated at 12 bits a code, the best ratio GIF allows (~2,500 pixels a byte).
    """
    clear, end = 1 << min_size, (1 << min_size) + 1
    writer = _BitWriter()
    writer.write(clear, min_size + 1)
    width, next_code, length, remaining = min_size + 1, end + 1, 1, count
    while remaining > 0:
        take = min(length, remaining)
        writer.write(colour if take == 1 else end + take - 1, width)
        remaining -= take
        if next_code < 4096:
            if next_code >= 1 << width and width < 12:
                width += 1
            next_code += 1
            length += 1
        elif not deferred_clear:
            writer.write(clear, width)
            width, next_code, length = min_size + 1, end + 1, 1
        else:
            length = 4095 - end + 1  # the longest string the full table holds
    writer.write(end, width)
    return writer.getvalue()


def sub_blocks(data: bytes, size: int = 255) -> bytes:
    return b"".join(bytes([len(data[i : i + size])]) + data[i : i + size] for i in range(0, len(data), size)) + b"\0"


def gif_header(width: int, height: int, *, colours: int = 256, background: int = 0, version: bytes = b"89a") -> bytes:
    """Header, logical screen descriptor and a global colour table of ``colours`` (0: none) entries."""
    if colours:
        bits = max(colours - 1, 1).bit_length() - 1
        packed = 0x80 | 0x70 | bits
        table = bytes((i * 67 + c * 29) % 256 for i in range(2 << bits) for c in range(3))
    else:
        packed, table = 0x70, b""
    return b"GIF" + version + struct.pack("<HHBBB", width, height, packed, background, 0) + table


def gif_frame(
    width: int,
    height: int,
    lzw: bytes,
    *,
    x: int = 0,
    y: int = 0,
    min_size: int = 8,
    interlace: bool = False,
    local_colours: int = 0,
    control: bytes | None = None,
) -> bytes:
    """An image descriptor (after an optional graphic control extension) with its LZW data."""
    packed = 0x40 if interlace else 0
    table = b""
    if local_colours:
        bits = max(local_colours - 1, 1).bit_length() - 1
        packed |= 0x80 | bits
        table = bytes((i * 13 + c * 101) % 256 for i in range(2 << bits) for c in range(3))
    descriptor = b"," + struct.pack("<HHHHB", x, y, width, height, packed) + table
    return (control or b"") + descriptor + bytes([min_size]) + sub_blocks(lzw)


def gif_control(delay: int = 1, dispose: int = 0, transparent: int | None = None) -> bytes:
    flags = dispose << 2 | (1 if transparent is not None else 0)
    return b"!\xf9\x04" + struct.pack("<BHB", flags, delay, transparent or 0) + b"\0"


def gif_netscape_loop(loops: int = 0) -> bytes:
    return b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loops) + b"\0"


# ------------------------------------------------------------------------------------------------- RIFF / WebP


def riff_chunk(fourcc: bytes, payload: bytes, *, size: int | None = None) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return fourcc + struct.pack("<I", len(payload) if size is None else size) + payload + pad


def riff_webp(chunks: Sequence[bytes], *, size: int | None = None) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(fourcc, payload) of each chunk in a RIFF WebP file."""
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append((fourcc, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return chunks


def u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def vp8x(
    width: int, height: int, *, icc: bool = False, alpha: bool = False, exif: bool = False, anim: bool = False
) -> bytes:
    flags = (icc << 5) | (alpha << 4) | (exif << 3) | (anim << 1)
    return riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + u24(width - 1) + u24(height - 1))


def anim(background: int = 0xFFFFFFFF, loops: int = 0) -> bytes:
    return riff_chunk(b"ANIM", struct.pack("<IH", background, loops))


def anmf(frame: bytes, width: int, height: int, x: int = 0, y: int = 0, duration: int = 1, flags: int = 0) -> bytes:
    """An animation frame; ``frame`` is the frame's own chunks (VP8/VP8L, optionally ALPH first)."""
    header = u24(x // 2) + u24(y // 2) + u24(width - 1) + u24(height - 1) + u24(duration) + bytes([flags])
    return riff_chunk(b"ANMF", header + frame)


# -------------------------------------------------------------------------------------------------------- BMP


def bmp(
    width: int,
    height: int,
    bpp: int,
    pixels: bytes,
    *,
    compression: int = 0,
    colours: int = 0,
    palette: bytes | None = None,
    header_size: int = 40,
    masks: tuple[int, int, int, int] | None = None,
    offset: int | None = None,
    image_size: int | None = None,
) -> bytes:
    """A Windows BMP with a BITMAPINFOHEADER (or longer: 52/56/108/124 carry masks, 12 is the OS/2 core header)."""
    if header_size == 12:
        info = struct.pack("<IHHHH", 12, width & 0xFFFF, height & 0xFFFF, 1, bpp)
    else:
        info = struct.pack(
            "<IiiHHIIiiII",
            header_size,
            width,
            height,
            1,
            bpp,
            compression,
            len(pixels) if image_size is None else image_size,
            2835,
            2835,
            colours,
            0,
        )
        if header_size > 40:
            extra = struct.pack("<IIII", *(masks or (0, 0, 0, 0)))
            info += (extra + bytes(header_size))[: header_size - 40]
    if palette is None:
        entries = colours or (1 << bpp if bpp <= 8 else 0)
        palette = bytes((i * 7 + c * 50) % 256 for i in range(entries) for c in (0, 1, 2, 3))
    start = 14 + len(info) + len(palette) if offset is None else offset
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(palette) + len(pixels), 0, 0, start)
    return header + info + palette + pixels


# ------------------------------------------------------------------------------------------------------- EXIF

TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
ORIENTATION, EXIF_IFD, GPS_IFD = 0x0112, 0x8769, 0x8825


@dataclass(frozen=True)
class Entry:
    """One IFD entry; ``value`` is stored inline if it fits in 4 bytes, else at ``offset`` (or appended)."""

    tag: int
    type: int
    count: int
    value: bytes = b""
    offset: int | None = None


def tiff_ifd(entries: Sequence[Entry], *, start: int = 8, next_ifd: int = 0, count: int | None = None) -> bytes:
    """One little-endian IFD placed at ``start`` in its TIFF stream, with its out-of-line values after it."""
    table_end = start + 2 + 12 * len(entries) + 4
    table, data = bytearray(), bytearray()
    for entry in entries:
        if entry.offset is not None:
            field = struct.pack("<I", entry.offset)
        elif len(entry.value) <= 4:
            field = entry.value.ljust(4, b"\0")
        else:
            field = struct.pack("<I", table_end + len(data))
            data += entry.value + (b"\0" if len(entry.value) % 2 else b"")
        table += struct.pack("<HHI", entry.tag, entry.type, entry.count) + field
    header = struct.pack("<H", len(entries) if count is None else count)
    return header + bytes(table) + struct.pack("<I", next_ifd) + bytes(data)


def exif(entries: Sequence[Entry], *, next_ifd: int = 0, tail: bytes = b"", count: int | None = None) -> bytes:
    """A TIFF-structured EXIF block (no ``Exif\\0\\0`` prefix) with one IFD at offset 8, then ``tail``."""
    return b"II*\0" + struct.pack("<I", 8) + tiff_ifd(entries, next_ifd=next_ifd, count=count) + tail


def orientation(value: int) -> Entry:
    return Entry(ORIENTATION, 3, 1, struct.pack("<H", value))


# -------------------------------------------------------------------------------------------------------- ICC


def icc_lut16(grid: int, *, channels: int = 3, table_entries: int = 2) -> bytes:
    """An RGB->XYZ ICC v2 profile whose A2B0 is a lut16 with ``grid``^channels CLUT points: building a colour
    transform from it costs that many evaluations, its size is ``grid**channels * 6`` bytes."""
    clut = bytes(grid**channels * 3 * 2)
    lut = b"mft2\0\0\0\0" + bytes((channels, 3, grid, 0))
    lut += struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536) + struct.pack(">HH", table_entries, table_entries)
    lut += bytes(channels * table_entries * 2) + clut + bytes(3 * table_entries * 2)
    xyz = b"XYZ \0\0\0\0" + struct.pack(">3i", 63190, 65536, 54061)
    tags = [(b"A2B0", lut), (b"wtpt", xyz)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += payload + bytes(-len(payload) % 4)
    size = offset + len(body)
    space = b"RGB " if channels == 3 else b"CMYK" if channels == 4 else f"{channels:X}CLR".encode()
    header = struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, b"scnr", space, b"XYZ ") + bytes(12)
    header += b"acsp" + bytes(24) + struct.pack(">I3i", 0, 63190, 65536, 54061) + bytes(48)
    return header[:128].ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + body
