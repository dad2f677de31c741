"""What an encoded image will cost to decode, read from its container before any pixel is decompressed.

Each allowed format gets a linear walk over its own structure (JPEG markers, PNG chunks, GIF blocks, the BMP
and WebP headers) that counts what drives a decoder's work - scans, chunks, extension blocks - and refuses
structures no camera or editor writes. The walks stop at the first limit passed, so their own cost is bounded
too. Pixel-count and memory limits are applied by the caller (``amaas.artifact.imaging.budget``) from the sizes found
here, so a header that lies about nothing but its dimensions is caught before allocation.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from amaas.errors import InvalidImageError, PayloadTooLargeError

# The decoders we let near untrusted bytes; Pillow knows dozens more, each one more attack surface.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

# JPEG: a camera file has ~20 segments (a 255-chunk ICC profile ~280); progressive scripts use ~10 scans.
MAX_JPEG_SEGMENTS = 1024
MAX_JPEG_SCANS = 64
# Stray and fill bytes between segments (libjpeg skips them; Pillow reads them one at a time in Python).
MAX_JPEG_JUNK = 4096
# Every coefficient decoded at most this many times on average: libjpeg's and mozjpeg's progressive scripts
# visit each about twice; a repeated refinement scan (each one a full pass over the image) does not fit.
MAX_JPEG_PASSES = 4.0
# PNG: IDAT chunks are streamed to zlib in C but each costs a Python step in Pillow; other chunks more.
MAX_PNG_IDAT_CHUNKS = 65_536
MAX_PNG_OTHER_CHUNKS = 256
# GIF: extension sub-blocks before the first frame are walked in Python by Pillow, one at a time.
MAX_GIF_EXTENSION_BLOCKS = 4096
# Larger EXIF blocks are not read for their orientation (a camera's is a few kB; 64 kB is JPEG's own cap).
MAX_EXIF_BYTES = 65_535

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}  # baseline, extended, progressive; Huffman or arithmetic
_JPEG_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless and hierarchical
# In entropy-coded data 0xFF is followed by 0x00 (stuffing), a restart marker or more 0xFF fill bytes; any
# other byte after it starts the next segment.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FILL = re.compile(rb"[^\xff]")


@dataclass(frozen=True)
class Container:
    """What the walk found.

    Attributes:
        format: One of ``FORMATS``.
        width, height: The size the decoder will allocate (a GIF frame may widen the logical screen).
        coefficient_bytes: Extra memory a JPEG decoder needs for all its DCT coefficients at full size
            (progressive and multi-scan files), whatever the output scale.
        rle: A run-length-encoded BMP, which Pillow decodes in Python.
    """

    format: str
    width: int
    height: int
    coefficient_bytes: int = 0
    rle: bool = False


def sniff(data: bytes) -> str:
    """The format the bytes' magic number names, or ``InvalidImageError``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise InvalidImageError(f"not a decodable image; supported formats are {', '.join(FORMATS)}")


def inspect(data: bytes) -> Container:
    """Walks the container of ``data``.

    Raises:
        InvalidImageError: Not one of ``FORMATS``, malformed, truncated, or a coding no camera uses.
        PayloadTooLargeError: More decoding work than a real image of its size needs (scans, chunks, blocks).
    """
    kind = sniff(data)
    try:
        return _WALKERS[kind](data)
    except (struct.error, IndexError):
        raise InvalidImageError(f"the {kind} image is truncated or corrupt") from None


def _u16be(data: bytes, pos: int) -> int:
    value: int = struct.unpack_from(">H", data, pos)[0]
    return value


def _jpeg(data: bytes) -> Container:
    pos, segments, junk, exif = 2, 0, 0, 0
    frame: tuple[int, int, list[tuple[int, int, int]]] | None = None
    scans: list[list[tuple[int, int]]] = []  # per scan: (component index, coefficients per block)
    while pos < len(data):
        if data[pos] != 0xFF:
            # libjpeg skips stray bytes between segments with a warning; Pillow walks them one by one in Python
            marker_at = data.find(b"\xff", pos)
            junk += (marker_at if marker_at >= 0 else len(data)) - pos
            if marker_at < 0 or junk > MAX_JPEG_JUNK:
                raise InvalidImageError("the JPEG image is corrupt (bytes where a marker should be)")
            pos = marker_at
        fill = _NOT_FILL.search(data, pos)  # 0xFF fill bytes before the marker code
        if fill is None:
            break
        junk += fill.start() - pos - 1
        if junk > MAX_JPEG_JUNK:
            raise InvalidImageError("the JPEG image is corrupt (stray bytes between its segments)")
        pos = fill.start()
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # standalone markers carry no length
        if marker == 0xD8:
            raise InvalidImageError("the JPEG image is corrupt (a second start-of-image marker)")
        length = _u16be(data, pos)
        if length < 2 or pos + length > len(data):
            raise InvalidImageError("the JPEG image is truncated or corrupt")
        payload = data[pos + 2 : pos + length]
        pos += length
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise PayloadTooLargeError(f"the JPEG image has more than {MAX_JPEG_SEGMENTS} segments")
        if marker == 0xE1 and payload.startswith(b"Exif\0\0"):
            exif += 1
            if exif > 1:  # Pillow joins repeated ones, then parses the whole join at open
                raise InvalidImageError("the JPEG image has more than one EXIF block")
        if marker in _JPEG_OTHER_SOF:
            raise InvalidImageError(
                "lossless and hierarchical JPEG are not supported; send a baseline or progressive JPEG"
            )
        if marker in _JPEG_SOF:
            if frame is not None:
                raise InvalidImageError("the JPEG image is corrupt (two frame headers)")
            frame = _jpeg_frame(payload)
        elif marker == 0xDA:
            if frame is None:
                raise InvalidImageError("the JPEG image is corrupt (a scan before the frame header)")
            scans.append(_jpeg_scan(payload, frame[2]))
            if len(scans) > MAX_JPEG_SCANS:
                raise PayloadTooLargeError(f"the JPEG image has more than {MAX_JPEG_SCANS} scans")
            found = _NEXT_MARKER.search(data, pos)
            pos = found.start() if found else len(data)  # a missing end-of-image marker is tolerated
    if frame is None or not scans:
        raise InvalidImageError("the JPEG image is truncated or has no frame or no scan")
    width, height, components = frame
    blocks = [_blocks(width, height, c, components) for c in range(len(components))]
    visits = sum(blocks[c] * coefficients for scan in scans for c, coefficients in scan)
    if visits > MAX_JPEG_PASSES * 64 * sum(blocks):
        raise PayloadTooLargeError(
            f"the JPEG image's {len(scans)} scans decode each coefficient {visits / (64 * sum(blocks)):.1f} times "
            f"on average; the limit is {MAX_JPEG_PASSES:g}"
        )
    # libjpeg keeps every coefficient (2 bytes each) at full size when the file has several scans
    coefficient_bytes = 2 * 64 * sum(blocks) if len(scans) > 1 else 0
    return Container("JPEG", width, height, coefficient_bytes=coefficient_bytes)


def _jpeg_frame(payload: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    precision, height, width, count = struct.unpack_from(">BHHB", payload, 0)
    if precision != 8:
        raise InvalidImageError(f"{precision}-bit JPEG is not supported; send an 8-bit JPEG")
    if width == 0 or height == 0:
        raise InvalidImageError("the JPEG image declares no size in its frame header")
    if count not in (1, 3, 4) or len(payload) < 6 + 3 * count:
        raise InvalidImageError("the JPEG image is corrupt (its frame header lists no valid components)")
    components = []
    for i in range(count):
        ident, sampling, _ = struct.unpack_from(">BBB", payload, 6 + 3 * i)
        h, v = sampling >> 4, sampling & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise InvalidImageError("the JPEG image is corrupt (invalid sampling factors)")
        components.append((ident, h, v))
    return width, height, components


def _jpeg_scan(payload: bytes, components: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    count = payload[0]
    ids = [ident for ident, _, _ in components]
    if not 1 <= count <= len(components) or len(payload) < 1 + 2 * count + 3:
        raise InvalidImageError("the JPEG image is corrupt (an invalid scan header)")
    start, end = payload[1 + 2 * count], payload[2 + 2 * count]
    if start > end or end > 63:
        raise InvalidImageError("the JPEG image is corrupt (an invalid spectral selection)")
    members = []
    for i in range(count):
        ident = payload[1 + 2 * i]
        if ident not in ids:
            raise InvalidImageError("the JPEG image is corrupt (a scan names an unknown component)")
        members.append((ids.index(ident), end - start + 1))
    return members


def _blocks(width: int, height: int, index: int, components: list[tuple[int, int, int]]) -> int:
    """8x8 blocks of one component, as libjpeg sizes its coefficient arrays (MCU-padded)."""
    h_max = max(h for _, h, _ in components)
    v_max = max(v for _, _, v in components)
    _, h, v = components[index]
    across = _ceil_div(_ceil_div(_ceil_div(width * h, h_max), 8), h) * h
    down = _ceil_div(_ceil_div(_ceil_div(height * v, v_max), 8), v) * v
    return across * down


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# Chunks the PNG specification allows once; each compressed one (iCCP) is inflated by Pillow at open.
_PNG_ONCE = {b"IHDR", b"PLTE", b"tRNS", b"iCCP", b"eXIf", b"acTL", b"cHRM", b"gAMA", b"sRGB", b"sBIT", b"pHYs", b"bKGD"}
_PNG_COLOURS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png(data: bytes) -> Container:
    pos, idat, other = 8, 0, 0
    seen: set[bytes] = set()
    size: tuple[int, int] | None = None
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or pos + 12 + length > len(data) or not kind.isalpha():
            raise InvalidImageError("the PNG image is truncated or corrupt")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise InvalidImageError("the PNG image is corrupt (it does not start with a header chunk)")
            width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, pos + 8)
            if width == 0 or height == 0 or depth not in _PNG_COLOURS.get(colour, ()) or interlace > 1:
                raise InvalidImageError("the PNG image is corrupt (an invalid header)")
            size = (width, height)
        elif kind == b"IDAT":
            idat += 1
        else:
            other += 1
            if kind in _PNG_ONCE:
                if kind in seen:
                    raise InvalidImageError(f"the PNG image has more than one {kind.decode()} chunk")
                seen.add(kind)
        if idat > MAX_PNG_IDAT_CHUNKS or other > MAX_PNG_OTHER_CHUNKS:
            raise PayloadTooLargeError(
                f"the PNG image has more than {MAX_PNG_IDAT_CHUNKS} data chunks or {MAX_PNG_OTHER_CHUNKS} others"
            )
        pos += 12 + length
        if kind == b"IEND" or pos >= len(data):
            break
    if not idat:
        raise InvalidImageError("the PNG image has no image data")
    return Container("PNG", *size)


def _gif(data: bytes) -> Container:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while True:
        introducer = data[pos]
        if introducer == 0x21:  # extension: a label, then sub-blocks up to a zero length
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
                blocks += 1
                if blocks > MAX_GIF_EXTENSION_BLOCKS:
                    raise PayloadTooLargeError(
                        f"the GIF image has more than {MAX_GIF_EXTENSION_BLOCKS} extension blocks before its first "
                        "frame"
                    )
            pos += 1
        elif introducer == 0x2C:
            left, top, frame_width, frame_height = struct.unpack_from("<HHHH", data, pos + 1)
            if frame_width == 0 or frame_height == 0:
                raise InvalidImageError("the GIF image's first frame is empty")
            # Pillow grows the canvas to hold a first frame that overhangs the logical screen
            return Container("GIF", max(width, left + frame_width), max(height, top + frame_height))
        else:
            raise InvalidImageError("the GIF image has no frame")


_BMP_COMPRESSION = {0: "none", 1: "RLE8", 2: "RLE4", 3: "bitfields", 6: "bitfields"}


def _bmp(data: bytes) -> Container:
    header = struct.unpack_from("<I", data, 14)[0]
    if header == 12:
        width, height = struct.unpack_from("<HH", data, 18)
        compression = 0
    elif header in (40, 52, 56, 64, 108, 124):
        width, height, _, _, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        raise InvalidImageError("the BMP image has an unknown header")
    if compression not in _BMP_COMPRESSION:
        raise InvalidImageError("BMP images with embedded JPEG/PNG or unknown compression are not supported")
    if width <= 0 or height in (0, -(2**31)):
        raise InvalidImageError("the BMP image declares an invalid size")
    return Container("BMP", width, abs(height), rle=compression in (1, 2))


def _webp(data: bytes) -> Container:
    kind = data[12:16]
    if kind == b"VP8X":
        width, height = 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        if data[20] != 0x2F:
            raise InvalidImageError("the WebP image is corrupt (bad lossless signature)")
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidImageError("the WebP image is corrupt (bad lossy signature)")
        width, height = struct.unpack_from("<HH", data, 26)
        width, height = width & 0x3FFF, height & 0x3FFF
    else:
        raise InvalidImageError("the WebP image is corrupt (unknown first chunk)")
    if width == 0 or height == 0 or len(data) < 30:
        raise InvalidImageError("the WebP image declares no size")
    return Container("WEBP", width, height)


_WALKERS = {"JPEG": _jpeg, "PNG": _png, "GIF": _gif, "BMP": _bmp, "WEBP": _webp}
