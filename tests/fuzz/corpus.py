"""A deterministic corpus of hostile images, each at most 4.5 MB (the API's per-image limit).

    python tests/fuzz/corpus.py --count 10000 --seed 0 --out /tmp/hostile     # write files (+ index.tsv)
    python tests/fuzz/corpus.py --count 300 --list                               # names and sizes only
    python tests/fuzz/corpus.py --seed 0 --index 4711 --out /tmp/one             # regenerate one item

Item ``i`` depends only on ``(seed, i)``, so any item can be rebuilt from its name's index without the ones
before it, and a generator of 10,000 items is lazy. Two kinds of items, interleaved so that any 100
consecutive ones cover every category:

* crafted: bombs hand-assembled per format (``png``, ``png-chunks``, ``apng``, ``jpeg``, ``jpeg-markers``,
  ``bmp``, ``gif``, ``webp``), files whose magic lies (``polyglot``) and formats the server must refuse
  (``foreign``). Each category first walks its canonical list (the same for every seed: the attacks known
  to hurt), then draws random parameters from the seed.
* mutated: photographs from scikit-image saved in every allowed format, mode and a few sizes (``seed``,
  unmodified, the control group), then bit flips, insertions, deletions, truncations, splices and
  format-aware header overwrites with valid checksums (``mutant-<format>``).

A name reads ``<index>-<category>-<what>.<ext>``; the extension is the format the item *claims*, which is
what an HTTP client would send as Content-Type and what ``amaas batch run`` picks files by.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `tests.fuzz` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import formats as f

MAX_BYTES = 4_500_000  # AMAAS_MAX_IMAGE_BYTES: anything larger is refused before decoding
MP40 = 40_000_000  # AMAAS_MAX_IMAGE_PIXELS
EXTENSIONS = {"png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp", "bmp": "bmp"}
MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
}


class Item(NamedTuple):
    """One corpus entry; unpacks as ``name, category, data``."""

    name: str
    category: str
    data: bytes


class Case(NamedTuple):
    """A crafted input before it is built: built lazily so that listing a category costs nothing."""

    label: str
    ext: str
    build: Callable[[], bytes]


def media_type(name: str) -> str:
    """The Content-Type an item claims, from its name's extension."""
    return MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")


# ============================================================================================== shared images


@functools.lru_cache(maxsize=32)
def flat(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A flat grey image: the cheapest pixels to encode, so the largest dimensions fit in 4.5 MB."""
    colour: int | tuple[int, ...] = 120 if mode in ("L", "P", "1", "I;16") else (120, 130, 140, 255)[: len(mode)]
    return Image.new(mode, (width, height), colour)


@functools.lru_cache(maxsize=64)
def jpeg_flat(width: int, height: int, *, progressive: bool = False, subsampling: int = 2, mode: str = "RGB") -> bytes:
    return f.encode(flat(width, height, mode), "JPEG", quality=50, progressive=progressive, subsampling=subsampling)


@functools.lru_cache(maxsize=32)
def webp_flat(width: int, height: int, lossless: bool, alpha: bool = False) -> bytes:
    if lossless:
        return webp_lossless(width, height, alpha)
    return f.encode(flat(width, height, "RGBA" if alpha else "RGB"), "WEBP", quality=10, method=0)


@functools.lru_cache(maxsize=1)
def _vp8l_flat() -> bytes:
    return f.webp_chunks(f.encode(flat(64, 64), "WEBP", lossless=True, quality=0, method=0))[0][1]


def webp_lossless(width: int, height: int, alpha: bool = False) -> bytes:
    """A flat lossless WebP of any size up to 16384x16384 in 38 bytes: libwebp codes a flat image with
    single-symbol Huffman codes, so the bitstream after the header is the same at every size."""
    payload = _vp8l_flat()
    (bits,) = struct.unpack("<I", payload[1:5])
    bits = (bits & ~0x1FFFFFFF) | (width - 1) & 0x3FFF | ((height - 1) & 0x3FFF) << 14 | int(alpha) << 28
    return f.riff_webp([f.riff_chunk(b"VP8L", payload[:1] + struct.pack("<I", bits) + payload[5:])])


def webp_frame_chunks(data: bytes) -> bytes:
    """The image chunks (ALPH, VP8, VP8L) of a WebP, to embed as an animation frame."""
    return b"".join(f.riff_chunk(c, p) for c, p in f.webp_chunks(data) if c in (b"ALPH", b"VP8 ", b"VP8L"))


@functools.lru_cache(maxsize=4)
def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# ================================================================================================ crafted: PNG

# (label, width, height): extreme aspect ratios within the 40 MP limit are the ones a pixel check lets through
# and a shorter-side resize then multiplies; the rest sit on and past the limit or break integer arithmetic.
PNG_DIMENSIONS = [
    ("1x200000", 1, 200_000),
    ("1x1000000", 1, 1_000_000),
    ("200000x1", 200_000, 1),
    ("1000000x1", 1_000_000, 1),
    ("1x40000000", 1, MP40),
    ("40000000x1", MP40, 1),
    ("2x20000000", 2, 20_000_000),
    ("16x2500000", 16, 2_500_000),
    ("255x156862", 255, 156_862),
    ("6324x6324", 6324, 6324),
    ("6325x6325-past", 6325, 6325),
    ("65535x610", 65535, 610),
    ("1x40000001-past", 1, MP40 + 1),
    ("2147483647x1-past", 2**31 - 1, 1),
    ("4294967295x4294967295", 2**32 - 1, 2**32 - 1),
    ("0x0", 0, 0),
    ("0x100", 0, 100),
    ("100000x100000-header", 100_000, 100_000),
]
# (label, bit depth, colour type, extra chunks): every pixel layout Pillow decodes to a different mode
PNG_LAYOUTS: list[tuple[str, int, int, tuple[bytes, ...]]] = [
    ("grey16", 16, 0, ()),
    ("rgb16", 16, 2, ()),
    ("rgba8", 8, 6, ()),
    ("rgba16", 16, 6, ()),
    ("la8", 8, 4, ()),
    ("la16", 16, 4, ()),
    ("palette8-trns", 8, 3, (f.png_chunk(b"PLTE", bytes(range(256)) * 3), f.png_chunk(b"tRNS", bytes(256)))),
    ("palette1-trns", 1, 3, (f.png_chunk(b"PLTE", b"\0\0\0\xff\xff\xff"), f.png_chunk(b"tRNS", b"\0"))),
    ("palette8-noplte", 8, 3, ()),
    ("grey1", 1, 0, ()),
    ("grey2", 2, 0, ()),
    ("grey4", 4, 0, ()),
    ("grey8-trns", 8, 0, (f.png_chunk(b"tRNS", b"\0\0"),)),
    ("grey16-trns", 16, 0, (f.png_chunk(b"tRNS", b"\0\0"),)),
    ("rgb8-trns", 8, 2, (f.png_chunk(b"tRNS", bytes(6)),)),
    ("rgb16-trns", 16, 2, (f.png_chunk(b"tRNS", bytes(6)),)),
    ("rgb8", 8, 2, ()),
    ("grey8", 8, 0, ()),
    ("bad-depth-3", 3, 2, ()),
    ("bad-ctype-5", 8, 5, ()),
]


def _png_case(
    label: str, width: int, height: int, depth: int, ctype: int, extra: Sequence[bytes], interlace: int = 0
) -> Case:
    raw = f.png_raw_length(width, height, depth, ctype, interlace)
    if raw > 4_000_000_000:  # more than a 4.5 MB deflate stream can hold: send the header and a stub
        return Case(
            label, "png", lambda: f.png(width, height, depth=depth, ctype=ctype, before=extra, idat=f.zlib_zeros(64))
        )
    return Case(label, "png", lambda: f.png(width, height, depth=depth, ctype=ctype, before=extra, interlace=interlace))


def png_cases() -> list[Case]:
    cases = [_png_case(f"dims-{label}-rgb8", w, h, 8, 2, ()) for label, w, h in PNG_DIMENSIONS]
    for label, depth, ctype, extra in PNG_LAYOUTS:
        cases.append(_png_case(f"40mp-6324x6324-{label}", 6324, 6324, depth, ctype, extra))
    for label, depth, ctype, extra in PNG_LAYOUTS[:8]:
        cases.append(_png_case(f"aspect-1x200000-{label}", 1, 200_000, depth, ctype, extra))
    for label, depth, ctype, extra in (PNG_LAYOUTS[16], PNG_LAYOUTS[3], PNG_LAYOUTS[9], PNG_LAYOUTS[6]):
        cases.append(_png_case(f"adam7-6324x6324-{label}", 6324, 6324, depth, ctype, extra, interlace=1))
    cases += [
        _png_case("adam7-1x1000000-rgb8", 1, 1_000_000, 8, 2, (), interlace=1),
        _png_case("adam7-bad-method-2", 1000, 1000, 8, 2, (), interlace=2),
        Case("zlib-bomb-64x64-idat-4gb", "png", lambda: f.png(64, 64, raw_length=4_000_000_000)),
        Case("zlib-bomb-6324x6324-idat-x2", "png", lambda: f.png(6324, 6324, raw_length=2 * 6324 * 18973)),
        Case("idat-1-byte-chunks-40mp-rgba16", "png", lambda: f.png(6324, 6324, depth=16, ctype=6, idat_split=1)),
        Case("idat-1-byte-chunks-40mp-rgb8", "png", lambda: f.png(6324, 6324, idat_split=1)),
        Case("idat-truncated-40mp-one-row", "png", lambda: f.png(6324, 6324, raw_length=18973)),
        Case("idat-missing-40mp", "png", lambda: f.PNG_SIGNATURE + f.ihdr(6324, 6324) + f.png_chunk(b"IEND", b"")),
        Case("idat-random-40mp", "png", lambda: f.png(6324, 6324, idat=random.Random(0).randbytes(4_000_000))),
        Case("idat-stored-blocks-1000x1000", "png", lambda: f.png(1000, 1000, idat=zlib.compress(bytes(3_001_000), 0))),
        Case("ihdr-length-2gb", "png", lambda: f.PNG_SIGNATURE + f.png_chunk(b"IHDR", bytes(13), length=2**31 - 1)),
        Case("ihdr-bad-crc-40mp", "png", lambda: _png_bad_crc()),
        Case("no-iend-40mp", "png", lambda: f.png(6324, 6324)[:-12]),
    ]
    return cases


def _png_bad_crc() -> bytes:
    data = f.png(6324, 6324)
    return data[:29] + b"\0\0\0\0" + data[33:]


def png_random(rng: random.Random) -> Case:
    label, width, height = rng.choice(PNG_DIMENSIONS[:12])
    if rng.random() < 0.5:  # a random aspect ratio at a random pixel count around the limit
        pixels = int(MP40 * rng.choice([0.01, 0.1, 0.25, 0.5, 0.9, 1.0]))
        width = rng.choice([1, 2, 3, 7, 64, 300, int(pixels**0.5)])
        height = max(1, pixels // width)
        if rng.random() < 0.5:
            width, height = height, width
        label = f"{width}x{height}"
    layout, depth, ctype, extra = rng.choice(PNG_LAYOUTS)
    interlace = int(rng.random() < 0.2)
    return _png_case(
        f"random-{label}-{layout}{'-adam7' if interlace else ''}",
        width,
        height,
        depth,
        ctype,
        extra,
        interlace=interlace,
    )


# ========================================================================================= crafted: PNG chunks


def text_chunk(kind: bytes, key: bytes, value: bytes) -> bytes:
    if kind == b"zTXt":
        return f.png_chunk(kind, key + b"\0\0" + value)
    if kind == b"iTXt":
        return f.png_chunk(kind, key + b"\0\1\0\0\0" + value)
    return f.png_chunk(kind, key + b"\0" + value)


def _many(chunk: bytes, budget: int = 4_300_000) -> list[bytes]:
    return [chunk] * (budget // len(chunk))


def exif_many_entries(count: int, orient: int = 6, *, alias: int = 0, loop: bool = False) -> bytes:
    """EXIF with an orientation and ``count`` more entries; with ``alias``, every entry's value is the same
    ``alias``-byte blob (one copy in the file, one per entry in a parser that reads each)."""
    entries = [f.orientation(orient)]
    if alias:
        blob_at = 8 + 2 + 12 * (count + 1) + 4
        entries += [f.Entry(tag, 7, alias, offset=blob_at) for tag in _plain_tags(count)]
        return f.exif(entries, next_ifd=8 if loop else 0, tail=bytes(alias))
    entries += [f.Entry(tag, 3, 1, b"\1\0") for tag in _plain_tags(count)]
    return f.exif(entries, next_ifd=8 if loop else 0)


def _plain_tags(count: int) -> list[int]:
    """``count`` distinct tags that are neither the orientation nor a pointer to another IFD."""
    special = {f.ORIENTATION, f.EXIF_IFD, f.GPS_IFD, 0xA005, 0x014A}
    return [tag for tag in range(1, count + len(special) + 1) if tag not in special][:count]


def exif_subifd_loop(depth: int = 2000) -> bytes:
    """IFD0 -> ExifIFD -> GPS IFD -> ... each pointing at the next, the last pointing back at the first."""
    ifds, start = b"", 8
    size = 2 + 12 * 3 + 4
    for i in range(depth):
        following = start + size if i + 1 < depth else 8
        entries = [
            f.orientation(6),
            f.Entry(f.EXIF_IFD, 4, 1, struct.pack("<I", following)),
            f.Entry(f.GPS_IFD, 4, 1, struct.pack("<I", following)),
        ]
        ifds += f.tiff_ifd(entries, start=start, next_ifd=following)
        start += size
    return b"II*\0" + struct.pack("<I", 8) + ifds


def xmp_orientation(repeats: int) -> bytes:
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/>'
    return packet + b"<a tiff:Orientation>6</a>" * repeats + b"</x:xmpmeta>"


def png_chunk_cases() -> list[Case]:
    big = functools.partial(f.png, 6324, 6324)
    small = functools.partial(f.png, 64, 64)
    raw_exif = b"\nexif\n" + str(len(b"Exif\0\0" + exif_many_entries(10))).encode() + b"\n"
    raw_exif += (b"Exif\0\0" + exif_many_entries(10)).hex().encode()
    return [
        Case("many-tEXt-300k", "png", lambda: small(before=_many(text_chunk(b"tEXt", b"k", b"")))),
        Case("many-zTXt-200k", "png", lambda: small(before=_many(text_chunk(b"zTXt", b"k", zlib.compress(b""))))),
        Case("many-unknown-ancillary-350k", "png", lambda: small(before=_many(f.png_chunk(b"prVt", b"")))),
        Case("many-chunks-after-idat-350k", "png", lambda: small(after=_many(f.png_chunk(b"tIME", bytes(7))))),
        Case("many-bad-crc-ancillary", "png", lambda: small(before=_many(f.png_chunk(b"prVt", b"x", crc=0)))),
        Case(
            "zTXt-60x1mb",
            "png",
            lambda: small(before=[text_chunk(b"zTXt", b"k%d" % i, f.zlib_zeros(1_000_000)) for i in range(60)]),
        ),
        Case(
            "zTXt-4000x1mb",
            "png",
            lambda: small(before=[text_chunk(b"zTXt", b"k%d" % i, f.zlib_zeros(1_000_000)) for i in range(4000)]),
        ),
        Case("zTXt-one-4gb", "png", lambda: small(before=[text_chunk(b"zTXt", b"k", f.zlib_zeros(4_000_000_000))])),
        Case(
            "iTXt-compressed-4000x1mb",
            "png",
            lambda: small(before=[text_chunk(b"iTXt", b"k%d" % i, f.zlib_zeros(1_000_000)) for i in range(4000)]),
        ),
        Case("iTXt-plain-4mb", "png", lambda: small(before=[f.png_chunk(b"iTXt", b"k\0\0\0\0\0" + b"a" * 4_000_000)])),
        Case("tEXt-one-4mb", "png", lambda: small(before=[text_chunk(b"tEXt", b"k", b"a" * 4_000_000)])),
        Case("iCCP-1mb-zeros", "png", lambda: small(before=[f.png_chunk(b"iCCP", b"p\0\0" + f.zlib_zeros(1_000_000))])),
        Case(
            "iCCP-4gb-bomb", "png", lambda: small(before=[f.png_chunk(b"iCCP", b"p\0\0" + f.zlib_zeros(4_000_000_000))])
        ),
        Case(
            "iCCP-lut16-grid48",
            "png",
            lambda: small(before=[f.png_chunk(b"iCCP", b"p\0\0" + zlib.compress(f.icc_lut16(48)))]),
        ),
        Case(
            "iCCP-lut16-grid255",
            "png",
            lambda: small(before=[f.png_chunk(b"iCCP", b"p\0\0" + zlib.compress(f.icc_lut16(255)))]),
        ),
        Case(
            "iCCP-x20000",
            "png",
            lambda: small(before=[f.png_chunk(b"iCCP", b"p\0\0" + zlib.compress(f.icc_lut16(2)))] * 20000),
        ),
        Case("eXIf-orient6-40mp", "png", lambda: big(before=[f.png_chunk(b"eXIf", f.exif([f.orientation(6)]))])),
        Case(
            "eXIf-orient5-40mp-rgba16",
            "png",
            lambda: f.png(6324, 6324, depth=16, ctype=6, before=[f.png_chunk(b"eXIf", f.exif([f.orientation(5)]))]),
        ),
        Case(
            "eXIf-orient8-1x200000",
            "png",
            lambda: f.png(1, 200_000, before=[f.png_chunk(b"eXIf", f.exif([f.orientation(8)]))]),
        ),
        Case("eXIf-65531-entries", "png", lambda: small(before=[f.png_chunk(b"eXIf", exif_many_entries(65530))])),
        Case(
            "eXIf-aliased-4mb-x1000",
            "png",
            lambda: small(before=[f.png_chunk(b"eXIf", exif_many_entries(1000, alias=4_000_000))]),
        ),
        Case(
            "eXIf-aliased-64k-x65000",
            "png",
            lambda: small(before=[f.png_chunk(b"eXIf", exif_many_entries(65000, alias=65536))]),
        ),
        Case(
            "eXIf-ifd-self-loop", "png", lambda: small(before=[f.png_chunk(b"eXIf", exif_many_entries(10, loop=True))])
        ),
        Case("eXIf-subifd-chain-2000", "png", lambda: small(before=[f.png_chunk(b"eXIf", exif_subifd_loop(2000))])),
        Case("eXIf-x100000", "png", lambda: small(before=_many(f.png_chunk(b"eXIf", f.exif([f.orientation(6)]))))),
        Case(
            "eXIf-count-65535-short",
            "png",
            lambda: small(before=[f.png_chunk(b"eXIf", f.exif([f.orientation(6)], count=65535))]),
        ),
        Case(
            "raw-profile-exif-zTXt",
            "png",
            lambda: big(before=[text_chunk(b"zTXt", b"Raw profile type exif", zlib.compress(raw_exif))]),
        ),
        Case(
            "xmp-orientation-4mb",
            "png",
            lambda: big(
                before=[
                    f.png_chunk(b"eXIf", f.exif([f.orientation(6)])),
                    f.png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp_orientation(160_000)),
                ]
            ),
        ),
        Case("sPLT-4mb", "png", lambda: small(before=[f.png_chunk(b"sPLT", b"p\0\x10" + bytes(4_000_000))])),
        Case(
            "PLTE-x100000",
            "png",
            lambda: f.png(64, 64, depth=8, ctype=3, before=_many(f.png_chunk(b"PLTE", bytes(30)))),
        ),
        Case(
            "tRNS-longer-than-PLTE",
            "png",
            lambda: f.png(
                64, 64, depth=8, ctype=3, before=[f.png_chunk(b"PLTE", bytes(6)), f.png_chunk(b"tRNS", bytes(4000))]
            ),
        ),
        Case("chunk-length-2gb-ancillary", "png", lambda: small(before=[f.png_chunk(b"prVt", b"", length=2**31 - 1)])),
        Case(
            "chunk-length-4gb-idat",
            "png",
            lambda: f.PNG_SIGNATURE + f.ihdr(6324, 6324) + f.png_chunk(b"IDAT", f.zlib_zeros(1000), length=2**32 - 1),
        ),
    ]


def png_chunk_random(rng: random.Random) -> Case:
    kinds = [b"tEXt", b"zTXt", b"iTXt", b"prVt", b"eXIf", b"iCCP", b"sPLT", b"tIME"]
    kind = rng.choice(kinds)
    count = rng.choice([10, 1000, 30_000, 100_000])
    unpacked = rng.choice([0, 100, 10_000, 1_000_000])
    payload = (
        b"k\0\0" + f.zlib_zeros(unpacked) if kind in (b"zTXt", b"iCCP") else b"k\0" + bytes(rng.choice([0, 10, 1000]))
    )
    if kind == b"eXIf":
        payload = exif_many_entries(rng.choice([1, 100, 10_000]), rng.randint(0, 9), loop=rng.random() < 0.3)
    chunk = f.png_chunk(kind, payload)
    count = max(1, min(count, 4_300_000 // len(chunk)))
    width, height = rng.choice([(64, 64), (6324, 6324), (1, 200_000), (3000, 3000)])
    return Case(
        f"random-{kind.decode()}-x{count}-{width}x{height}", "png", lambda: f.png(width, height, before=[chunk] * count)
    )


# ================================================================================================ crafted: APNG


def apng(
    width: int,
    height: int,
    frames: Sequence[tuple[int, int, int, int, bytes]],
    *,
    declared: int | None = None,
    default_is_frame: bool = False,
    depth: int = 8,
    ctype: int = 2,
) -> bytes:
    """An APNG: a default image of zeros, then ``frames`` as (width, height, x, y, zlib stream)."""
    actl = f.png_chunk(b"acTL", struct.pack(">II", len(frames) if declared is None else declared, 0))
    seq = 0
    before = [actl]
    if default_is_frame:
        before.append(f.fctl(seq, width, height))
        seq += 1
    body = []
    for fw, fh, x, y, stream in frames:
        body.append(f.fctl(seq, fw, fh, x, y, dispose=seq % 3, blend=seq % 2) + f.fdat(seq + 1, stream))
        seq += 2
    return f.png(width, height, depth=depth, ctype=ctype, before=before, after=body)


def apng_cases() -> list[Case]:
    tiny = f.zlib_zeros(f.png_raw_length(1, 1, 8, 2))
    full = f.zlib_zeros(f.png_raw_length(6324, 6324, 8, 2))
    return [
        Case(
            "65k-1x1-frames-1000x1000",
            "png",
            lambda: apng(1000, 1000, [(1, 1, i % 999, i % 997, tiny) for i in range(65_000)]),
        ),
        Case("65k-1x1-frames-40mp", "png", lambda: apng(6324, 6324, [(1, 1, 0, 0, tiny)] * 65_000)),
        Case(
            "35-full-frames-40mp",
            "png",
            lambda: apng(6324, 6324, [(6324, 6324, 0, 0, full)] * 35, default_is_frame=True),
        ),
        Case("acTL-2147483647-frames", "png", lambda: apng(1000, 1000, [(1, 1, 0, 0, tiny)], declared=2**31 - 1)),
        Case("acTL-0-frames", "png", lambda: apng(1000, 1000, [(1, 1, 0, 0, tiny)], declared=0)),
        Case("frame-larger-than-canvas", "png", lambda: apng(10, 10, [(6324, 6324, 0, 0, full)])),
        Case("frame-offset-overflow", "png", lambda: apng(1000, 1000, [(1000, 1000, 2**32 - 500, 2**32 - 500, tiny)])),
        Case("frame-zero-size", "png", lambda: apng(1000, 1000, [(0, 0, 0, 0, tiny)])),
        Case(
            "default-fctl-40mp-1x1-canvas",
            "png",
            lambda: f.png(1, 1, before=[f.png_chunk(b"acTL", struct.pack(">II", 1, 0)), f.fctl(0, 6324, 6324)]),
        ),
        Case(
            "1x1000000-canvas-frames",
            "png",
            lambda: apng(1, 1_000_000, [(1, 1000, 0, i * 1000, f.zlib_zeros(1000 * 4)) for i in range(1000)]),
        ),
        Case("seq-out-of-order", "png", lambda: _apng_shuffled()),
        Case(
            "rgba16-500-frames-1000x1000",
            "png",
            lambda: apng(
                1000,
                1000,
                [(1000, 1000, 0, 0, f.zlib_zeros(f.png_raw_length(1000, 1000, 16, 6)))] * 500,
                depth=16,
                ctype=6,
            ),
        ),
    ]


def _apng_shuffled() -> bytes:
    tiny = f.zlib_zeros(f.png_raw_length(1, 1, 8, 2))
    frames = [f.fctl(i * 2, 1, 1) + f.fdat(i * 2 + 1, tiny) for i in range(20_000)]
    random.Random(1).shuffle(frames)
    return f.png(1000, 1000, before=[f.png_chunk(b"acTL", struct.pack(">II", 20_000, 0))], after=frames)


def apng_random(rng: random.Random) -> Case:
    width, height = rng.choice([(100, 100), (1000, 1000), (6324, 6324), (1, 200_000), (4000, 2000)])
    fw, fh = rng.choice([(1, 1), (width, height), (width // 2 or 1, height // 2 or 1), (width + 1, height)])
    stream = f.zlib_zeros(f.png_raw_length(fw, fh, 8, 2))
    count = max(1, min(rng.choice([2, 100, 10_000, 60_000]), 4_300_000 // (len(stream) + 64)))
    label = f"random-{width}x{height}-{count}x{fw}x{fh}"
    return Case(
        label, "png", lambda: apng(width, height, [(fw, fh, 0, 0, stream)] * count, default_is_frame=rng.random() < 0.5)
    )


# ================================================================================================ crafted: JPEG


def progressive_repeat(width: int, height: int, repeats: int, *, scan: int = -1, subsampling: int = 2) -> bytes:
    """A flat progressive JPEG with one of its scans (by default the last refinement scan) repeated."""
    segments = f.jpeg_segments(jpeg_flat(width, height, progressive=True, subsampling=subsampling))
    scans = [i for i, s in enumerate(segments) if s.marker == 0xDA]
    chosen = scans[scan]
    repeated = (
        segments[chosen - 1 : chosen + 1] if segments[chosen - 1].marker == 0xC4 else segments[chosen : chosen + 1]
    )
    return f.jpeg_join(segments[: chosen + 1] + repeated * repeats + segments[chosen + 1 :])


def _header_segments(width: int, height: int, *, subsampling: int = 2, mode: str = "RGB") -> list[f.Segment]:
    """SOI up to (and without) the first SOS of a flat progressive JPEG: tables, SOF2, DHTs."""
    segments = f.jpeg_segments(jpeg_flat(width, height, progressive=True, subsampling=subsampling, mode=mode))
    first_scan = next(i for i, s in enumerate(segments) if s.marker == 0xDA)
    return segments[:first_scan]


def empty_scans(width: int, height: int, count: int, *, arithmetic: bool = False, data: bytes = b"") -> bytes:
    """A progressive JPEG (Huffman or arithmetic) of ``count`` scans that carry no (or ``data``) entropy bytes:
    the decoder still walks every MCU of every scan, and a scan costs ~14 bytes."""
    header = _header_segments(width, height)
    out = b""
    for s in header:
        if arithmetic and s.marker == 0xC4:
            continue
        if arithmetic and s.marker == 0xC2:
            s = f.Segment(0xCA, s.payload)
        out += s.to_bytes()
    out += f.sos([(1, 0), (2, 0), (3, 0)], 0, 0, 0, 0) + data
    out += (f.sos([(1, 0)], 1, 63, 0, 0) + data) * count
    return out + f.EOI


def sequential(
    width: int,
    height: int,
    *,
    marker: int = 0xC0,
    precision: int = 8,
    components: int = 3,
    sampling: Sequence[int] = (0x22, 0x11, 0x11),
    data: bytes = b"",
    restart: int | None = None,
    huffman: bool = True,
) -> bytes:
    """A sequential (or lossless, SOF3/SOF11) JPEG header from a flat encode's tables with ``data`` as its scan."""
    tables = [s for s in _header_segments(64, 64) if s.marker == 0xDB] + (_baseline_dht() if huffman else [])
    comps = [(i + 1, sampling[i % len(sampling)], min(i, 1)) for i in range(components)]
    out = f.SOI + b"".join(s.to_bytes() for s in tables)
    if restart is not None:
        out += f.dri(restart)
    out += f.sof(marker, width, height, comps, precision)
    out += f.sos(
        [(i + 1, 0x00 if i == 0 else 0x11) for i in range(min(components, 4))],
        0,
        63 if marker not in (0xC3, 0xCB) else 1,
        0,
        0,
    )
    return out + data + f.EOI


@functools.lru_cache(maxsize=1)
def _baseline_dht() -> list[f.Segment]:
    return [s for s in f.jpeg_segments(jpeg_flat(64, 64)) if s.marker == 0xC4]


@functools.lru_cache(maxsize=16)
def _baseline_scan(width: int, height: int, subsampling: int, mode: str) -> tuple[list[f.Segment], int]:
    segments = f.jpeg_segments(jpeg_flat(width, height, subsampling=subsampling, mode=mode))
    return segments, next(i for i, s in enumerate(segments) if s.marker == 0xDA)


def with_segments(
    width: int, height: int, extra: Sequence[bytes], *, where: str = "start", mode: str = "RGB", subsampling: int = 2
) -> bytes:
    """A flat baseline JPEG with ``extra`` raw bytes (segments, fill bytes, junk) after SOI or before SOS."""
    segments, scan = _baseline_scan(width, height, subsampling, mode)
    index = 1 if where == "start" else scan
    return f.jpeg_join(segments[:index]) + b"".join(extra) + f.jpeg_join(segments[index:])


def replace_marker(data: bytes, old: int, new: int, payload: Callable[[bytes], bytes] | None = None) -> bytes:
    segments = f.jpeg_segments(data)
    out = [
        f.Segment(new, payload(s.payload) if payload else s.payload, s.scan) if s.marker == old else s for s in segments
    ]
    return f.jpeg_join(out)


def jpeg_cases() -> list[Case]:
    rnd = random.Random(0)
    noise_bytes = rnd.randbytes(4_000_000)
    return [
        Case("progressive-6000x6000-last-scan-x600", "jpg", lambda: progressive_repeat(6000, 6000, 600)),
        Case("progressive-6000x6000-last-scan-x5000", "jpg", lambda: progressive_repeat(6000, 6000, 5000)),
        Case("progressive-6000x6000-last-scan-x300000", "jpg", lambda: progressive_repeat(6000, 6000, 300_000)),
        Case("progressive-1024x1024-last-scan-x300000", "jpg", lambda: progressive_repeat(1024, 1024, 300_000)),
        Case(
            "progressive-6324x6324-444-last-scan-x3000",
            "jpg",
            lambda: progressive_repeat(6324, 6324, 3000, subsampling=0),
        ),
        Case("progressive-6000x6000-dc-scan-x40", "jpg", lambda: progressive_repeat(6000, 6000, 40, scan=0)),
        Case("progressive-6000x6000-first-ac-scan-x5000", "jpg", lambda: progressive_repeat(6000, 6000, 5000, scan=1)),
        Case("progressive-65500x610-last-scan-x3000", "jpg", lambda: progressive_repeat(65500, 610, 3000)),
        Case("progressive-1x65500-last-scan-x3000", "jpg", lambda: progressive_repeat(1, 65500, 3000)),
        Case("empty-scans-6000x6000-x1000", "jpg", lambda: empty_scans(6000, 6000, 1000)),
        Case("empty-scans-6000x6000-x300000", "jpg", lambda: empty_scans(6000, 6000, 300_000)),
        Case("arithmetic-empty-scans-6000x6000-x100", "jpg", lambda: empty_scans(6000, 6000, 100, arithmetic=True)),
        Case(
            "arithmetic-empty-scans-6000x6000-x300000", "jpg", lambda: empty_scans(6000, 6000, 300_000, arithmetic=True)
        ),
        Case(
            "arithmetic-random-scans-6324x6324-x2000",
            "jpg",
            lambda: empty_scans(6324, 6324, 2000, arithmetic=True, data=noise_bytes[:2000]),
        ),
        Case(
            "arithmetic-sof9-40mp-random",
            "jpg",
            lambda: sequential(6324, 6324, marker=0xC9, data=noise_bytes, huffman=False),
        ),
        Case("baseline-65500x610", "jpg", lambda: jpeg_flat(65500, 610)),
        Case("baseline-610x65500", "jpg", lambda: jpeg_flat(610, 65500)),
        Case("baseline-1x65500", "jpg", lambda: jpeg_flat(1, 65500)),
        Case("baseline-65500x1", "jpg", lambda: jpeg_flat(65500, 1)),
        Case("baseline-8x65500-444", "jpg", lambda: jpeg_flat(8, 65500, subsampling=0)),
        Case("baseline-65535x65535-header", "jpg", lambda: sequential(65535, 65535)),
        Case("baseline-6324x6324-no-data", "jpg", lambda: sequential(6324, 6324)),
        Case("baseline-6324x6324-random-data", "jpg", lambda: sequential(6324, 6324, data=noise_bytes)),
        Case("baseline-6324x6324-444", "jpg", lambda: jpeg_flat(6324, 6324, subsampling=0)),
        Case("baseline-6324x6324-420", "jpg", lambda: jpeg_flat(6324, 6324, subsampling=2)),
        Case("cmyk-6324x6324", "jpg", lambda: jpeg_flat(6324, 6324, mode="CMYK")),
        Case("cmyk-progressive-6324x6324-last-scan-x2000", "jpg", lambda: _cmyk_progressive(2000)),
        Case(
            "ycck-adobe-6324x6324",
            "jpg",
            lambda: with_segments(6324, 6324, [f.segment(0xEE, b"Adobe\0\x64\0\0\0\0\x02")], mode="CMYK"),
        ),
        Case("grey-6324x6324", "jpg", lambda: jpeg_flat(6324, 6324, mode="L")),
        Case("sampling-4x4-40mp", "jpg", lambda: sequential(6324, 6324, sampling=(0x44, 0x11, 0x11), data=noise_bytes)),
        Case(
            "sampling-odd-3x1-40mp",
            "jpg",
            lambda: sequential(6324, 6324, sampling=(0x31, 0x11, 0x11), data=noise_bytes),
        ),
        Case(
            "sampling-chroma-larger",
            "jpg",
            lambda: sequential(6324, 6324, sampling=(0x11, 0x44, 0x44), data=noise_bytes),
        ),
        Case(
            "four-components-4x4-40mp",
            "jpg",
            lambda: sequential(6324, 6324, components=4, sampling=(0x44, 0x44, 0x44, 0x44), data=noise_bytes),
        ),
        Case("ten-components", "jpg", lambda: sequential(2000, 2000, components=10, data=noise_bytes[:100_000])),
        Case("restart-interval-1-40mp-no-rst", "jpg", lambda: _with_dri(jpeg_flat(6324, 6324), 1)),
        Case(
            "restart-interval-1-rst-every-byte",
            "jpg",
            lambda: sequential(
                6324, 6324, restart=1, data=b"".join(bytes((0, 0xFF, 0xD0 + i % 8)) for i in range(1_400_000))
            ),
        ),
        Case(
            "restart-markers-out-of-order",
            "jpg",
            lambda: sequential(
                6324, 6324, restart=1, data=b"".join(bytes((0, 0xFF, 0xD0 + (i * 5) % 8)) for i in range(1_400_000))
            ),
        ),
        Case(
            "sof1-precision-12-40mp",
            "jpg",
            lambda: replace_marker(jpeg_flat(6324, 6324), 0xC0, 0xC1, lambda p: b"\x0c" + p[1:]),
        ),
        Case(
            "sof1-precision-16",
            "jpg",
            lambda: replace_marker(jpeg_flat(2000, 2000), 0xC0, 0xC1, lambda p: b"\x10" + p[1:]),
        ),
        Case(
            "sof3-lossless-16bit-40mp-random",
            "jpg",
            lambda: sequential(6324, 6324, marker=0xC3, precision=16, sampling=(0x11,), data=noise_bytes),
        ),
        Case("sof3-lossless-8bit-40mp-empty", "jpg", lambda: sequential(6324, 6324, marker=0xC3, sampling=(0x11,))),
        Case(
            "sof11-lossless-arithmetic-40mp",
            "jpg",
            lambda: sequential(6324, 6324, marker=0xCB, sampling=(0x11,), data=noise_bytes, huffman=False),
        ),
        Case("sof5-hierarchical", "jpg", lambda: sequential(6324, 6324, marker=0xC5, data=noise_bytes[:1000])),
        Case("sof-zero-components", "jpg", lambda: sequential(6324, 6324, components=0)),
        Case(
            "sof-duplicate-component-ids",
            "jpg",
            lambda: replace_marker(
                jpeg_flat(2000, 2000), 0xC0, 0xC0, lambda p: p[:6] + b"\x01" + p[7:9] + b"\x01" + p[10:]
            ),
        ),
        Case(
            "height-zero-dnl",
            "jpg",
            lambda: sequential(6324, 0, data=noise_bytes[:1000]) + f.segment(0xDC, struct.pack(">H", 6324)),
        ),
        Case(
            "two-sof-markers",
            "jpg",
            lambda: with_segments(
                64, 64, [f.sof(0xC0, 6324, 6324, [(1, 0x22, 0), (2, 0x11, 1), (3, 0x11, 1)])], where="scan"
            ),
        ),
        Case("dqt-all-zero-quant", "jpg", lambda: with_segments(6324, 6324, [f.dqt(0, 0), f.dqt(1, 0)], where="scan")),
        Case(
            "dqt-16bit-tables",
            "jpg",
            lambda: with_segments(2000, 2000, [f.segment(0xDB, b"\x10" + b"\xff\xff" * 64)], where="scan"),
        ),
    ]


def _cmyk_progressive(repeats: int) -> bytes:
    segments = f.jpeg_segments(f.encode(flat(6324, 6324, "CMYK"), "JPEG", quality=50, progressive=True))
    scans = [i for i, s in enumerate(segments) if s.marker == 0xDA]
    last = scans[-1]
    return f.jpeg_join(segments[: last + 1] + [segments[last]] * repeats + segments[last + 1 :])


def _with_dri(data: bytes, interval: int) -> bytes:
    segments = f.jpeg_segments(data)
    index = next(i for i, s in enumerate(segments) if s.marker == 0xDA)
    return f.jpeg_join(segments[:index]) + f.dri(interval) + f.jpeg_join(segments[index:])


def jpeg_random(rng: random.Random) -> Case:
    width, height = rng.choice([(6000, 6000), (4000, 3000), (6324, 6324), (65500, 610), (2, 65500), (1024, 1024)])
    kind = rng.choice(["repeat", "empty", "arith", "baseline", "restart"])
    if kind == "repeat":
        repeats, scan = rng.choice([10, 200, 1000, 4000]), rng.choice([-1, -2, 1, 2])
        return Case(
            f"random-progressive-{width}x{height}-scan{scan}-x{repeats}",
            "jpg",
            lambda: progressive_repeat(width, height, repeats, scan=scan),
        )
    if kind in ("empty", "arith"):
        count = rng.choice([10, 1000, 50_000, 250_000])
        arith = kind == "arith"
        return Case(
            f"random-{kind}-scans-{width}x{height}-x{count}",
            "jpg",
            lambda: empty_scans(width, height, count, arithmetic=arith),
        )
    if kind == "restart":
        interval = rng.choice([0, 1, 2, 65535])
        return Case(
            f"random-dri{interval}-{width}x{height}", "jpg", lambda: _with_dri(jpeg_flat(width, height), interval)
        )
    sub, mode = rng.choice([0, 1, 2]), rng.choice(["RGB", "L", "CMYK"])
    return Case(
        f"random-baseline-{width}x{height}-{mode}-sub{sub}",
        "jpg",
        lambda: jpeg_flat(width, height, subsampling=sub, mode=mode),
    )


# ====================================================================================== crafted: JPEG markers


def jpeg_marker_cases() -> list[Case]:
    exif_seg = functools.partial(f.segment, 0xE1)
    big_exif = b"Exif\0\0" + exif_many_entries(5400)
    psd = b"Photoshop 3.0\0" + b"".join(b"8BIM" + struct.pack(">HBxI", 0x0400 + i % 100, 0, 0) for i in range(5000))
    return [
        Case("com-x1000000", "jpg", lambda: with_segments(64, 64, _many(f.segment(0xFE, b""), 4_300_000))),
        Case(
            "app0-15-empty-x1000000",
            "jpg",
            lambda: with_segments(64, 64, [f.segment(0xE0 + i % 16, b"") for i in range(1_000_000)]),
        ),
        Case(
            "exif-concat-x400000",
            "jpg",
            lambda: with_segments(64, 64, _many(exif_seg(b"Exif\0\0" + bytes(6)), 4_300_000)),
        ),
        Case("exif-concat-x60-64k", "jpg", lambda: with_segments(64, 64, [exif_seg(b"Exif\0\0" + bytes(65000))] * 60)),
        Case("exif-5400-entries-orient6-40mp", "jpg", lambda: with_segments(6324, 6324, [exif_seg(big_exif)])),
        Case(
            "exif-orient5-65500x610",
            "jpg",
            lambda: with_segments(65500, 610, [exif_seg(b"Exif\0\0" + f.exif([f.orientation(5)]))]),
        ),
        Case(
            "exif-orient6-1x65500",
            "jpg",
            lambda: with_segments(1, 65500, [exif_seg(b"Exif\0\0" + f.exif([f.orientation(6)]))]),
        ),
        Case(
            "exif-ifd-self-loop",
            "jpg",
            lambda: with_segments(64, 64, [exif_seg(b"Exif\0\0" + exif_many_entries(10, loop=True))]),
        ),
        Case(
            "exif-aliased-60k-x1000",
            "jpg",
            lambda: with_segments(64, 64, [exif_seg(b"Exif\0\0" + exif_many_entries(1000, alias=50_000))]),
        ),
        Case(
            "exif-subifd-chain", "jpg", lambda: with_segments(64, 64, [exif_seg(b"Exif\0\0" + exif_subifd_loop(1300))])
        ),
        Case(
            "xmp-orientation-55x64k",
            "jpg",
            lambda: with_segments(
                6324,
                6324,
                [exif_seg(b"Exif\0\0" + f.exif([f.orientation(6)]))]
                + [exif_seg(b"http://ns.adobe.com/xap/1.0/\0" + xmp_orientation(2600))] * 55,
            ),
        ),
        Case("fill-bytes-4mb", "jpg", lambda: with_segments(64, 64, [b"\xff" * 4_300_000])),
        Case("junk-bytes-between-markers-4mb", "jpg", lambda: with_segments(64, 64, [b"\x00" * 4_300_000])),
        Case("soi-x2000000", "jpg", lambda: with_segments(64, 64, [b"\xff\xd8" * 2_000_000])),
        Case("rst-markers-x2000000", "jpg", lambda: with_segments(64, 64, [b"\xff\xd0" * 2_000_000])),
        Case("dqt-x64000", "jpg", lambda: with_segments(64, 64, _many(f.dqt(0, 1), 4_300_000))),
        Case(
            "dqt-4-tables-x16000",
            "jpg",
            lambda: with_segments(
                64, 64, _many(f.segment(0xDB, b"".join(bytes([t]) + bytes([1]) * 64 for t in range(4))), 4_300_000)
            ),
        ),
        Case(
            "dht-x200000",
            "jpg",
            lambda: with_segments(64, 64, _many(_baseline_dht()[0].to_bytes(), 4_300_000), where="scan"),
        ),
        Case("dri-x1000000", "jpg", lambda: with_segments(64, 64, _many(f.dri(1), 4_300_000), where="scan")),
        Case(
            "icc-app2-68x64k",
            "jpg",
            lambda: with_segments(
                64, 64, [f.segment(0xE2, b"ICC_PROFILE\0" + bytes((i + 1, 68)) + bytes(65500)) for i in range(68)]
            ),
        ),
        Case(
            "icc-app2-x230000-tiny",
            "jpg",
            lambda: with_segments(
                64, 64, [f.segment(0xE2, b"ICC_PROFILE\0" + bytes((i % 255 + 1, 255))) for i in range(230_000)]
            ),
        ),
        Case(
            "icc-app2-bad-sequence",
            "jpg",
            lambda: with_segments(64, 64, [f.segment(0xE2, b"ICC_PROFILE\0\0\0" + bytes(100))] * 100),
        ),
        Case("icc-lut16-grid48-40mp", "jpg", lambda: with_segments(6324, 6324, _icc_segments(f.icc_lut16(48)))),
        Case("photoshop-5000-resources-x60", "jpg", lambda: with_segments(64, 64, [f.segment(0xED, psd[:65000])] * 60)),
        Case(
            "adobe-app14-transform-2-rgb",
            "jpg",
            lambda: with_segments(6324, 6324, [f.segment(0xEE, b"Adobe\0\x64\0\0\0\0\x02")]),
        ),
        Case(
            "jfif-thumbnail-255x255-x60",
            "jpg",
            lambda: with_segments(64, 64, [f.segment(0xE0, b"JFIF\0\x01\x02\0\0\1\0\1\xff\xff" + bytes(65000))] * 60),
        ),
        Case("mpf-65535-entries", "jpg", lambda: _mpo_entries(4000)),
        Case("segment-length-0", "jpg", lambda: with_segments(64, 64, [b"\xff\xe1\x00\x00"])),
        Case("segment-length-1", "jpg", lambda: with_segments(64, 64, [b"\xff\xfe\x00\x01"])),
        Case("segment-length-past-eof", "jpg", lambda: with_segments(64, 64, [b"\xff\xe1\xff\xff"])[:1000]),
    ]


def _icc_segments(profile: bytes) -> list[bytes]:
    parts = [profile[i : i + 65000] for i in range(0, len(profile), 65000)]
    return [f.segment(0xE2, b"ICC_PROFILE\0" + bytes((i + 1, len(parts))) + part) for i, part in enumerate(parts)]


def _mpo_entries(count: int) -> bytes:
    """A JPEG whose MPF (APP2) lists ``count`` images, each pointing back at the first."""
    entries = b"".join(struct.pack("<IIIHH", 0x020000 if i else 0x030000, 0, 0, 0, 0) for i in range(count))
    ifd = f.tiff_ifd(
        [
            f.Entry(0xB000, 7, 4, b"0100"),
            f.Entry(0xB001, 4, 1, struct.pack("<I", count)),
            f.Entry(0xB002, 7, len(entries), entries),
        ]
    )
    return with_segments(64, 64, [f.segment(0xE2, b"MPF\0II*\0" + struct.pack("<I", 8) + ifd)])


def jpeg_marker_random(rng: random.Random) -> Case:
    width, height = rng.choice([(64, 64), (6324, 6324), (1, 65500)])
    kind = rng.randrange(0xE0, 0xF0) if rng.random() < 0.7 else 0xFE
    size = rng.choice([0, 6, 100, 60_000])
    prefix = rng.choice(
        [b"", b"Exif\0\0", b"ICC_PROFILE\0\1\1", b"MPF\0", b"Photoshop 3.0\0", b"http://ns.adobe.com/xap/1.0/\0"]
    )
    seg = f.segment(kind, (prefix + bytes(size))[:65533])
    count = max(1, min(rng.choice([1, 100, 10_000, 1_000_000]), 4_300_000 // len(seg)))
    return Case(
        f"random-{kind:02X}-{prefix[:4].decode(errors='replace').strip()}-{size}b-x{count}-{width}x{height}",
        "jpg",
        lambda: with_segments(width, height, [seg] * count),
    )


# ================================================================================================= crafted: BMP


def rle_rows(width: int, height: int, row: bytes, *, end: bool = True) -> bytes:
    return row * height + (b"\0\1" if end else b"")


def bmp_rle(width: int, height: int, body: bytes, *, rle4: bool = False) -> bytes:
    return f.bmp(width, height, 4 if rle4 else 8, body, compression=2 if rle4 else 1)


def bmp_cases() -> list[Case]:
    run = b"\xff\x07"  # encoded mode: 255 pixels of colour 7 in two bytes
    return [
        Case("rle8-eol-only-6324x6324", "bmp", lambda: bmp_rle(6324, 6324, b"\0\0" * 6324 + b"\0\1")),
        Case("rle8-one-eol-40000000x1", "bmp", lambda: bmp_rle(MP40, 1, b"\0\0\0\1")),
        Case("rle8-one-eol-1x40000000", "bmp", lambda: bmp_rle(1, MP40, b"\0\0\0\1")),
        Case("rle8-eols-700-57000x700", "bmp", lambda: bmp_rle(57_000, 700, b"\0\0" * 700)),
        Case(
            "rle8-runs-6324x6324",
            "bmp",
            lambda: bmp_rle(6324, 6324, (run * 24 + b"\x2c\x07" + b"\0\0") * 6324 + b"\0\1"),
        ),
        Case(
            "rle4-runs-6324x6324",
            "bmp",
            lambda: bmp_rle(6324, 6324, (run * 24 + b"\x2c\x07" + b"\0\0") * 6324 + b"\0\1", rle4=True),
        ),
        Case("rle4-runs-only-2mb", "bmp", lambda: bmp_rle(6324, 6324, run * 1_000_000, rle4=True)),
        Case("rle8-delta-jumps-6324x6324", "bmp", lambda: bmp_rle(6324, 6324, b"\0\2\xff\xff" * 1_000_000)),
        Case("rle8-delta-then-runs", "bmp", lambda: bmp_rle(6324, 6324, (b"\0\2\xff\0" + run) * 500_000)),
        Case("rle8-absolute-255-x16000", "bmp", lambda: bmp_rle(6324, 6324, (b"\0\xff" + bytes(256)) * 16_000)),
        Case(
            "rle4-absolute-255-x30000", "bmp", lambda: bmp_rle(6324, 6324, (b"\0\xff" + bytes(128)) * 30_000, rle4=True)
        ),
        Case("rle8-top-down", "bmp", lambda: bmp_rle(6324, -6324, b"\0\0" * 6324)),
        Case("rle8-1400-bytes-40mp", "bmp", lambda: bmp_rle(MP40 // 700, 700, b"\0\0" * 700)),
        Case("rle8-past-40mp", "bmp", lambda: bmp_rle(6325, 6325, b"\0\1")),
        Case("rle8-width-2147483647", "bmp", lambda: bmp_rle(2**31 - 1, 1, b"\0\0\0\1")),
        Case(
            "rle24-compression-4-jpeg",
            "bmp",
            lambda: f.bmp(6000, 6000, 24, progressive_repeat(6000, 6000, 600), compression=4),
        ),
        Case("compression-5-png-bomb", "bmp", lambda: f.bmp(1, 1_000_000, 24, f.png(1, 1_000_000), compression=5)),
        Case("1bpp-36mp-full", "bmp", lambda: f.bmp(5984, 6000, 1, bytes(748 * 6000), colours=2)),
        Case("1bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 1, bytes(4_000_000), colours=2)),
        Case("4bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 4, bytes(4_000_000), colours=16)),
        Case("8bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 8, bytes(4_000_000))),
        Case("16bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 16, bytes(4_000_000))),
        Case("24bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 24, bytes(4_000_000))),
        Case("32bpp-40mp-truncated", "bmp", lambda: f.bmp(6324, 6324, 32, bytes(4_000_000))),
        Case(
            "32bpp-bitfields-alpha-40mp",
            "bmp",
            lambda: f.bmp(
                6324,
                6324,
                32,
                bytes(4_000_000),
                compression=3,
                header_size=124,
                masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000),
            ),
        ),
        Case(
            "16bpp-bitfields-565-40mp",
            "bmp",
            lambda: f.bmp(
                6324, 6324, 16, bytes(4_000_000), compression=3, header_size=56, masks=(0xF800, 0x7E0, 0x1F, 0)
            ),
        ),
        Case(
            "bitfields-odd-masks",
            "bmp",
            lambda: f.bmp(
                1000, 1000, 32, bytes(4_000_000), compression=3, header_size=56, masks=(0x1, 0x80000000, 0x7FFFFFFE, 0)
            ),
        ),
        Case(
            "bitfields-24bpp",
            "bmp",
            lambda: f.bmp(
                1000, 1000, 24, bytes(3_000_000), compression=3, header_size=56, masks=(0xFF0000, 0xFF00, 0xFF, 0)
            ),
        ),
        Case(
            "alphabitfields-6",
            "bmp",
            lambda: f.bmp(
                1000,
                1000,
                32,
                bytes(4_000_000),
                compression=6,
                header_size=56,
                masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000),
            ),
        ),
        Case("top-down-40mp-24bpp", "bmp", lambda: f.bmp(6324, -6324, 24, bytes(4_000_000))),
        Case("height-minus-2147483648", "bmp", lambda: f.bmp(1, -(2**31), 24, bytes(1000))),
        Case("width-negative", "bmp", lambda: f.bmp(-6324, 6324, 24, bytes(1000))),
        Case("1x40000000-8bpp", "bmp", lambda: f.bmp(1, MP40, 8, bytes(4_000_000))),
        Case("40000000x1-1bpp", "bmp", lambda: f.bmp(MP40, 1, 1, bytes(4_000_000), colours=2)),
        Case("1x200000-24bpp", "bmp", lambda: f.bmp(1, 200_000, 24, bytes(800_000))),
        Case("bpp-0", "bmp", lambda: f.bmp(1000, 1000, 0, bytes(1000))),
        Case("bpp-2", "bmp", lambda: f.bmp(1000, 1000, 2, bytes(250_000))),
        Case("bpp-64", "bmp", lambda: f.bmp(500, 500, 64, bytes(2_000_000))),
        Case(
            "colours-4294967295",
            "bmp",
            lambda: f.bmp(100, 100, 8, bytes(10_000), colours=2**32 - 1, palette=bytes(1024)),
        ),
        Case("colours-65536", "bmp", lambda: f.bmp(100, 100, 8, bytes(10_000), colours=65536)),
        Case("colours-16777216-4mb-palette", "bmp", lambda: f.bmp(100, 100, 8, bytes(10_000), colours=1_000_000)),
        Case(
            "os2-core-header-40mp", "bmp", lambda: f.bmp(6324, 6324, 24, bytes(4_000_000), header_size=12, palette=b"")
        ),
        Case("os2-v2-header-64", "bmp", lambda: f.bmp(6324, 6324, 24, bytes(4_000_000), header_size=64)),
        Case("header-size-16", "bmp", lambda: f.bmp(6324, 6324, 24, bytes(1000), header_size=16)),
        Case(
            "header-size-4294967295",
            "bmp",
            lambda: f.bmp(100, 100, 24, bytes(30_000), header_size=40)[:14] + b"\xff\xff\xff\xff" + bytes(100),
        ),
        Case("offset-past-eof", "bmp", lambda: f.bmp(6324, 6324, 24, bytes(1000), offset=2**31)),
        Case("offset-zero", "bmp", lambda: f.bmp(1000, 1000, 24, bytes(3_000_000), offset=0)),
        Case(
            "v5-icc-embedded-huge", "bmp", lambda: f.bmp(100, 100, 24, bytes(30_000) + f.icc_lut16(48), header_size=124)
        ),
    ]


def bmp_random(rng: random.Random) -> Case:
    width = rng.choice([1, 7, 1000, 6324, 57_000, MP40 // 1000, MP40])
    height = max(1, min(MP40 // max(width, 1), rng.choice([1, 700, 6324, MP40])))
    if rng.random() < 0.2:
        height = -height
    if rng.random() < 0.6:
        escape = rng.choice([b"\0\0", b"\xff\x07", b"\0\2\xff\xff", b"\0\xff" + bytes(256), b"\x03\x01"])
        count = rng.choice([1, 700, 100_000, 1_000_000])
        rle4 = rng.random() < 0.4
        body = (escape * count)[:4_400_000]
        return Case(
            f"random-rle{4 if rle4 else 8}-{width}x{height}-{escape[:2].hex()}-x{count}",
            "bmp",
            lambda: bmp_rle(width, height, body, rle4=rle4),
        )
    bpp = rng.choice([1, 4, 8, 16, 24, 32])
    size = rng.choice([1000, 100_000, 4_000_000])
    compression = 3 if bpp in (16, 32) and rng.random() < 0.5 else 0
    return Case(
        f"random-{bpp}bpp-{width}x{height}-{size}b-c{compression}",
        "bmp",
        lambda: f.bmp(
            width,
            height,
            bpp,
            bytes(size),
            compression=compression,
            header_size=56 if compression else 40,
            masks=(0xF800, 0x7E0, 0x1F, 0),
        ),
    )


# ================================================================================================= crafted: GIF


def gif(
    width: int, height: int, frames: Sequence[bytes], *, colours: int = 256, extensions: Sequence[bytes] = ()
) -> bytes:
    return f.gif_header(width, height, colours=colours) + b"".join(extensions) + b"".join(frames) + b";"


@functools.lru_cache(maxsize=64)
def run_frame(
    width: int, height: int, *, interlace: bool = False, deferred: bool = True, x: int = 0, y: int = 0
) -> bytes:
    return f.gif_frame(width, height, f.lzw_run(width * height, deferred_clear=deferred), x=x, y=y, interlace=interlace)


def gif_cases() -> list[Case]:
    tiny = f.gif_frame(1, 1, f.lzw_encode(b"\0"))
    comment = b"!\xfe" + f.sub_blocks(bytes(4_300_000))[:-1] + b"\0"
    return [
        Case("lzw-bomb-6324x6324", "gif", lambda: gif(6324, 6324, [run_frame(6324, 6324)])),
        Case("lzw-bomb-6324x6324-clearing", "gif", lambda: gif(6324, 6324, [run_frame(6324, 6324, deferred=False)])),
        Case("lzw-bomb-6324x6324-interlaced", "gif", lambda: gif(6324, 6324, [run_frame(6324, 6324, interlace=True)])),
        Case("lzw-bomb-65535x610", "gif", lambda: gif(65535, 610, [run_frame(65535, 610)])),
        Case("lzw-bomb-1x65535", "gif", lambda: gif(1, 65535, [run_frame(1, 65535)])),
        Case("lzw-bomb-65535x1", "gif", lambda: gif(65535, 1, [run_frame(65535, 1)])),
        Case("lzw-bomb-65535x65535-past", "gif", lambda: gif(65535, 65535, [run_frame(6324, 6324)])),
        Case("screen-65535x610-frame-1x1", "gif", lambda: gif(65535, 610, [tiny])),
        Case("screen-1x1-frame-6324x6324", "gif", lambda: gif(1, 1, [run_frame(6324, 6324)])),
        Case(
            "screen-1x1-frame-at-65534x609",
            "gif",
            lambda: gif(1, 1, [f.gif_frame(1, 1, f.lzw_encode(b"\0"), x=65534, y=609)]),
        ),
        Case(
            "screen-1x1-frame-at-0x65534",
            "gif",
            lambda: gif(1, 1, [f.gif_frame(1, 1, f.lzw_encode(b"\0"), x=0, y=65534)]),
        ),
        Case("frames-150000-1x1", "gif", lambda: gif(1000, 1000, [f.gif_control(0) + tiny] * 150_000)),
        Case(
            "frames-100-full-40mp", "gif", lambda: gif(6324, 6324, [f.gif_control(1, 1) + run_frame(6324, 6324)] * 100)
        ),
        Case(
            "frames-5000-local-tables",
            "gif",
            lambda: gif(1000, 1000, [f.gif_frame(1, 1, f.lzw_encode(b"\0"), local_colours=256)] * 5000),
        ),
        Case(
            "frames-dispose-previous-1000x1000-x1000",
            "gif",
            lambda: gif(1000, 1000, [f.gif_control(1, 3, 0) + run_frame(1000, 1000)] * 1000),
        ),
        Case("comment-one-4mb-in-subblocks", "gif", lambda: gif(64, 64, [run_frame(64, 64)], extensions=[comment])),
        Case(
            "comments-200000-tiny", "gif", lambda: gif(64, 64, [run_frame(64, 64)], extensions=_many(b"!\xfe\x01a\0"))
        ),
        Case("comments-between-frames", "gif", lambda: gif(64, 64, [b"!\xfe\x01a\0" * 100 + tiny] * 8000)),
        Case(
            "app-extensions-200000",
            "gif",
            lambda: gif(64, 64, [run_frame(64, 64)], extensions=_many(f.gif_netscape_loop())),
        ),
        Case(
            "xmp-app-extension-4mb",
            "gif",
            lambda: gif(
                64,
                64,
                [run_frame(64, 64)],
                extensions=[b"!\xff\x0bXMP DataXMP" + f.sub_blocks(xmp_orientation(160_000))],
            ),
        ),
        Case(
            "plain-text-extensions-200000",
            "gif",
            lambda: gif(64, 64, [run_frame(64, 64)], extensions=_many(b"!\x01\x0c" + bytes(12) + b"\0")),
        ),
        Case(
            "graphic-controls-400000",
            "gif",
            lambda: gif(64, 64, [run_frame(64, 64)], extensions=_many(f.gif_control())),
        ),
        Case(
            "lzw-random-codes-6324x6324",
            "gif",
            lambda: gif(6324, 6324, [f.gif_frame(6324, 6324, random.Random(2).randbytes(4_000_000))]),
        ),
        Case(
            "lzw-min-code-size-12",
            "gif",
            lambda: gif(1000, 1000, [f.gif_frame(1000, 1000, random.Random(3).randbytes(100_000), min_size=12)]),
        ),
        Case(
            "lzw-min-code-size-0", "gif", lambda: gif(1000, 1000, [f.gif_frame(1000, 1000, b"\x01" * 1000, min_size=0)])
        ),
        Case(
            "lzw-no-end-code-trailing-4mb",
            "gif",
            lambda: gif(64, 64, [f.gif_frame(64, 64, f.lzw_run(64 * 64)[:-2] + bytes(4_000_000))]),
        ),
        Case("no-colour-tables", "gif", lambda: gif(6324, 6324, [run_frame(6324, 6324)], colours=0)),
        Case(
            "background-index-out-of-range",
            "gif",
            lambda: f.gif_header(65535, 610, colours=2, background=255) + tiny + b";",
        ),
        Case("no-frames", "gif", lambda: f.gif_header(6324, 6324) + b";"),
        Case("no-trailer-truncated-frame", "gif", lambda: gif(6324, 6324, [run_frame(6324, 6324)])[:-5000]),
        Case(
            "gif87a-with-extensions",
            "gif",
            lambda: b"GIF87a" + gif(6324, 6324, [f.gif_control() + run_frame(6324, 6324)])[6:],
        ),
        Case("frame-zero-size", "gif", lambda: gif(1000, 1000, [f.gif_frame(0, 0, f.lzw_encode(b"\0"))])),
    ]


def gif_random(rng: random.Random) -> Case:
    width, height = rng.choice([(64, 64), (6324, 6324), (65535, 610), (1, 65535), (65535, 1), (4000, 4000), (1, 1)])
    fw, fh = rng.choice([(width, height), (1, 1), (6324, 6324), (width, 1)])
    x, y = rng.choice([(0, 0), (65535 - fw, 0), (0, 65535 - fh)]) if rng.random() < 0.3 else (0, 0)
    x, y = max(0, x), max(0, y)
    count = rng.choice([1, 2, 100, 10_000])
    interlace = rng.random() < 0.3
    frame = run_frame(fw, fh, interlace=interlace, x=x, y=y)
    count = max(1, min(count, 4_300_000 // len(frame)))
    return Case(
        f"random-{width}x{height}-{count}x{fw}x{fh}@{x},{y}{'-interlaced' if interlace else ''}",
        "gif",
        lambda: gif(width, height, [frame] * count),
    )


# ================================================================================================ crafted: WebP


def webp_extended(
    width: int, height: int, image: bytes, *, extra: Sequence[bytes] = (), icc: bool = False, exif: bool = False
) -> bytes:
    return f.riff_webp([f.vp8x(width, height, icc=icc, exif=exif), *extra, webp_frame_chunks(image)])


def webp_animation(
    width: int, height: int, frames: Sequence[tuple[bytes, int, int, int, int]], *, alpha: bool = False
) -> bytes:
    """``frames`` as (frame chunks, width, height, x, y)."""
    body = [f.vp8x(width, height, anim=True, alpha=alpha), f.anim()]
    body += [f.anmf(chunks, fw, fh, x, y, flags=i % 4) for i, (chunks, fw, fh, x, y) in enumerate(frames)]
    return f.riff_webp(body)


def webp_cases() -> list[Case]:
    lossless40 = functools.partial(webp_flat, 6324, 6324, True)
    tiny = webp_frame_chunks(webp_flat(2, 2, True))
    return [
        Case("lossy-6324x6324", "webp", lambda: webp_flat(6324, 6324, False)),
        Case("lossless-6324x6324", "webp", lambda: lossless40()),
        Case("lossless-alpha-6324x6324", "webp", lambda: webp_flat(6324, 6324, True, True)),
        Case("lossy-alpha-6324x6324", "webp", lambda: webp_flat(6324, 6324, False, True)),
        Case("lossless-16383x2441", "webp", lambda: webp_flat(16383, 2441, True)),
        Case("lossless-1x16383", "webp", lambda: webp_flat(1, 16383, True)),
        Case("lossless-16383x1", "webp", lambda: webp_flat(16383, 1, True)),
        Case("lossless-16384x16384-past", "webp", lambda: webp_lossless(16384, 16384)),
        Case("anim-canvas-40mp-one-2x2-frame", "webp", lambda: webp_animation(6324, 6324, [(tiny, 2, 2, 0, 0)])),
        Case("anim-canvas-13000x13000-past", "webp", lambda: webp_animation(13000, 13000, [(tiny, 2, 2, 0, 0)])),
        Case("anim-canvas-16384x16384-past", "webp", lambda: webp_animation(16384, 16384, [(tiny, 2, 2, 0, 0)])),
        Case(
            "anim-canvas-1x16383",
            "webp",
            lambda: webp_animation(1, 16383, [(webp_frame_chunks(webp_flat(1, 16383, True)), 1, 16383, 0, 0)]),
        ),
        Case("anim-60000-tiny-frames", "webp", lambda: webp_animation(1000, 1000, [(tiny, 2, 2, 0, 0)] * 60_000)),
        Case(
            "anim-5000-full-lossless-frames-40mp",
            "webp",
            lambda: webp_animation(6324, 6324, [(webp_frame_chunks(lossless40()), 6324, 6324, 0, 0)] * 5000),
        ),
        Case(
            "anim-frame-outside-canvas",
            "webp",
            lambda: webp_animation(100, 100, [(tiny, 2, 2, 16_000_000, 16_000_000)]),
        ),
        Case(
            "anim-frame-larger-than-canvas",
            "webp",
            lambda: webp_animation(2, 2, [(webp_frame_chunks(lossless40()), 6324, 6324, 0, 0)]),
        ),
        Case("vp8x-canvas-40mp-still-2x2", "webp", lambda: webp_extended(6324, 6324, webp_flat(2, 2, True))),
        Case("vp8x-canvas-2x2-still-40mp", "webp", lambda: webp_extended(2, 2, lossless40())),
        Case("vp8x-canvas-16777216x16777216", "webp", lambda: webp_extended(2**24, 2**24, webp_flat(2, 2, True))),
        Case(
            "iccp-4mb",
            "webp",
            lambda: webp_extended(
                64, 64, webp_flat(64, 64, True), extra=[f.riff_chunk(b"ICCP", bytes(4_000_000))], icc=True
            ),
        ),
        Case(
            "iccp-lut16-grid48",
            "webp",
            lambda: webp_extended(6324, 6324, lossless40(), extra=[f.riff_chunk(b"ICCP", f.icc_lut16(48))], icc=True),
        ),
        Case(
            "exif-65531-entries-orient6-40mp",
            "webp",
            lambda: webp_extended(
                6324, 6324, lossless40(), extra=[f.riff_chunk(b"EXIF", exif_many_entries(65530))], exif=True
            ),
        ),
        Case(
            "exif-orient6-1x16383",
            "webp",
            lambda: webp_extended(
                1,
                16383,
                webp_flat(1, 16383, True),
                extra=[f.riff_chunk(b"EXIF", f.exif([f.orientation(6)]))],
                exif=True,
            ),
        ),
        Case(
            "exif-aliased-4mb-x1000",
            "webp",
            lambda: webp_extended(
                64,
                64,
                webp_flat(64, 64, True),
                extra=[f.riff_chunk(b"EXIF", exif_many_entries(1000, alias=4_000_000))],
                exif=True,
            ),
        ),
        Case(
            "xmp-4mb-orientation",
            "webp",
            lambda: webp_extended(
                6324,
                6324,
                lossless40(),
                extra=[
                    f.riff_chunk(b"EXIF", f.exif([f.orientation(6)])),
                    f.riff_chunk(b"XMP ", xmp_orientation(160_000)),
                ],
                exif=True,
            ),
        ),
        Case(
            "unknown-chunks-300000",
            "webp",
            lambda: webp_extended(64, 64, webp_flat(64, 64, True), extra=_many(f.riff_chunk(b"prVt", b""))),
        ),
        Case(
            "riff-size-4gb",
            "webp",
            lambda: f.riff_webp([f.riff_chunk(b"VP8L", f.webp_chunks(lossless40())[0][1])], size=2**32 - 1),
        ),
        Case(
            "riff-size-small",
            "webp",
            lambda: f.riff_webp([f.riff_chunk(b"VP8L", f.webp_chunks(lossless40())[0][1])], size=4),
        ),
        Case(
            "vp8-chunk-size-4gb",
            "webp",
            lambda: f.riff_webp(
                [f.riff_chunk(b"VP8 ", f.webp_chunks(webp_flat(6324, 6324, False))[0][1], size=2**32 - 2)]
            ),
        ),
        Case(
            "alph-on-lossless-40mp",
            "webp",
            lambda: webp_extended(6324, 6324, lossless40(), extra=[f.riff_chunk(b"ALPH", b"\x01" + bytes(100))]),
        ),
    ]


def webp_random(rng: random.Random) -> Case:
    width, height = rng.choice([(64, 64), (6324, 6324), (1, 16383), (16383, 2441), (4000, 3000)])
    lossless, alpha = rng.random() < 0.5, rng.random() < 0.3
    if rng.random() < 0.5:
        count = rng.choice([1, 10, 1000, 30_000])
        fw, fh = rng.choice([(2, 2), (width, height)])
        chunks = webp_frame_chunks(webp_flat(fw, fh, lossless, alpha))
        count = max(1, min(count, 4_300_000 // (len(chunks) + 24)))
        return Case(
            f"random-anim-{width}x{height}-{count}x{fw}x{fh}",
            "webp",
            lambda: webp_animation(width, height, [(chunks, fw, fh, 0, 0)] * count, alpha=alpha),
        )
    extra_size = rng.choice([0, 1000, 1_000_000])
    kind = rng.choice([b"ICCP", b"EXIF", b"XMP ", b"prVt"])
    return Case(
        f"random-still-{width}x{height}-{'ll' if lossless else 'lossy'}-{kind.decode().strip()}{extra_size}",
        "webp",
        lambda: webp_extended(
            width,
            height,
            webp_flat(width, height, lossless, alpha),
            extra=[f.riff_chunk(kind, bytes(extra_size))],
            icc=kind == b"ICCP",
            exif=kind == b"EXIF",
        ),
    )


# ============================================================================================ crafted: polyglot


def polyglot_cases() -> list[Case]:
    png_bomb = functools.partial(f.png, 1, 200_000)
    small_jpeg = functools.partial(jpeg_flat, 64, 64)
    return [
        Case("png-magic-jpeg-body", "png", lambda: f.PNG_SIGNATURE + jpeg_flat(6324, 6324)),
        Case("jpeg-magic-png-body", "jpg", lambda: b"\xff\xd8\xff\xe0" + png_bomb()),
        Case("gif-magic-webp-body", "gif", lambda: b"GIF89a" + webp_flat(6324, 6324, True)),
        Case("bm-magic-random", "bmp", lambda: b"BM" + random.Random(4).randbytes(100_000)),
        Case("riff-webp-png-inside", "webp", lambda: f.riff_webp([f.riff_chunk(b"VP8L", png_bomb())])),
        Case("jpeg-then-png-bomb-appended", "jpg", lambda: small_jpeg() + png_bomb()),
        Case("png-then-gif-bomb-appended", "png", lambda: f.png(64, 64) + gif(6324, 6324, [run_frame(6324, 6324)])),
        Case(
            "gif-then-jpeg-appended",
            "gif",
            lambda: gif(64, 64, [run_frame(64, 64)]) + progressive_repeat(6000, 6000, 600),
        ),
        Case("jpeg-content-as-png-type", "png", lambda: progressive_repeat(6000, 6000, 600)),
        Case("png-content-as-jpeg-type", "jpg", lambda: png_bomb()),
        Case("bmp-content-as-webp-type", "webp", lambda: bmp_rle(MP40, 1, b"\0\0\0\1")),
        Case("mpo-second-frame-huge", "jpg", lambda: _mpo([flat(64, 64), flat(6324, 6324)])),
        Case("mpo-200-frames", "jpg", lambda: _mpo([flat(64, 64)] * 200)),
        Case(
            "exif-thumbnail-is-png-bomb",
            "jpg",
            lambda: with_segments(64, 64, [f.segment(0xE1, b"Exif\0\0" + _thumbnail_exif(f.png(1, 20_000)))]),
        ),
        Case(
            "exif-thumbnail-is-progressive-bomb",
            "jpg",
            lambda: with_segments(
                64, 64, [f.segment(0xE1, b"Exif\0\0" + _thumbnail_exif(progressive_repeat(2000, 2000, 3000)[:60_000]))]
            ),
        ),
        Case(
            "png-private-chunk-holds-jpeg",
            "png",
            lambda: f.png(64, 64, before=[f.png_chunk(b"jpEG", progressive_repeat(6000, 6000, 600))]),
        ),
        Case("zip-named-png", "png", lambda: b"PK\3\4" + bytes(26) + f.zlib_zeros(1_000_000)),
        Case("gzip-bomb-named-png", "png", lambda: b"\x1f\x8b\x08\0\0\0\0\0\0\3" + f.zlib_zeros(4_000_000_000)[2:-4]),
        Case(
            "svg-named-png",
            "png",
            lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
        ),
        Case("html-named-jpeg", "jpg", lambda: b"<html><script>alert(1)</script></html>"),
        Case("pdf-named-png", "png", lambda: f.encode(flat(64, 64), "PDF")),
        Case("empty", "png", lambda: b""),
        Case("one-byte", "jpg", lambda: b"\xff"),
        Case("magic-only-png", "png", lambda: f.PNG_SIGNATURE),
        Case("magic-only-jpeg", "jpg", lambda: b"\xff\xd8"),
        Case("magic-only-gif", "gif", lambda: b"GIF89a"),
        Case("magic-only-webp", "webp", lambda: b"RIFF\0\0\0\0WEBP"),
        Case("magic-only-bmp", "bmp", lambda: b"BM"),
        Case("all-ff-4mb", "jpg", lambda: b"\xff" * 4_400_000),
        Case("all-zero-4mb", "bmp", lambda: bytes(4_400_000)),
        Case(
            "exactly-4500000-bytes",
            "png",
            lambda: f.png(64, 64, after=[f.png_chunk(b"prVt", bytes(4_500_000 - 12 - len(f.png(64, 64))))]),
        ),
    ]


def _mpo(frames: Sequence[Image.Image]) -> bytes:
    return f.encode(frames[0], "MPO", save_all=True, append_images=list(frames[1:]), quality=50)


def _thumbnail_exif(thumbnail: bytes) -> bytes:
    """EXIF with an IFD1 whose JPEGInterchangeFormat thumbnail is ``thumbnail``."""
    ifd0_size = 2 + 12 + 4
    ifd1_at = 8 + ifd0_size
    ifd1_size = 2 + 2 * 12 + 4
    thumb_at = ifd1_at + ifd1_size
    ifd0 = f.tiff_ifd([f.orientation(1)], start=8, next_ifd=ifd1_at)
    ifd1 = f.tiff_ifd(
        [f.Entry(0x0201, 4, 1, struct.pack("<I", thumb_at)), f.Entry(0x0202, 4, 1, struct.pack("<I", len(thumbnail)))],
        start=ifd1_at,
    )
    return b"II*\0" + struct.pack("<I", 8) + ifd0 + ifd1 + thumbnail


def polyglot_random(rng: random.Random) -> Case:
    cases = _canonical("polyglot")
    a, b = rng.randrange(20), rng.randrange(20)
    cut = rng.choice([2, 4, 8, 16, 100])
    ext = rng.choice(["png", "jpg", "gif", "webp", "bmp"])
    label = f"random-head-of-{cases[a].label}-body-of-{cases[b].label}-cut{cut}"
    return Case(label, ext, lambda: _built("polyglot", a)[:cut] + _built("polyglot", b)[cut:])


# ============================================================================================= crafted: foreign


def foreign_cases() -> list[Case]:
    big = functools.partial(flat, 6324, 6324)
    return [
        Case("tiff-deflate-40mp", "png", lambda: f.encode(big(), "TIFF", compression="tiff_adobe_deflate")),
        Case("tiff-lzw-40mp", "png", lambda: f.encode(big(), "TIFF", compression="tiff_lzw")),
        Case("tiff-jpeg-6000x6000", "jpg", lambda: f.encode(flat(6000, 6000), "TIFF", compression="jpeg")),
        Case("tiff-packbits-1bit-40mp", "bmp", lambda: f.encode(big("1"), "TIFF", compression="packbits")),
        Case(
            "tiff-header-65535x65535",
            "png",
            lambda: (
                b"II*\0\x08\0\0\0"
                + f.tiff_ifd(
                    [f.Entry(256, 4, 1, struct.pack("<I", 65535)), f.Entry(257, 4, 1, struct.pack("<I", 65535))]
                )
            ),
        ),
        Case("psd-40mp-rle", "png", lambda: _psd(6324, 6324)),
        Case("ico-png-bomb-inside", "png", lambda: _ico(f.png(1, 1_000_000))),
        Case("ico-256-entries", "png", lambda: _ico(f.png(64, 64), entries=256)),
        Case("cur-png-inside", "png", lambda: b"\0\0\2\0" + _ico(f.png(6324, 6324))[4:]),
        Case("pcx-40mp", "bmp", lambda: f.encode(big("L"), "PCX")),
        Case(
            "pcx-header-65535x65535",
            "bmp",
            lambda: b"\x0a\x05\x01\x08" + struct.pack("<HHHH", 0, 0, 65534, 65534) + bytes(116),
        ),
        Case("tga-rle-40mp", "bmp", lambda: f.encode(big(), "TGA", compression="tga_rle")),
        Case("sgi-1200x1200", "png", lambda: f.encode(flat(1200, 1200), "SGI")),
        Case("ppm-p6-40mp-header", "png", lambda: b"P6\n6324 6324\n255\n" + bytes(4_000_000)),
        Case("pgm-p5-16bit-40mp", "png", lambda: b"P5\n6324 6324\n65535\n" + bytes(4_000_000)),
        Case("pbm-p4-36mp", "bmp", lambda: b"P4\n6000 6000\n" + bytes(4_500_000 - 13)),
        Case(
            "pam-p7",
            "png",
            lambda: b"P7\nWIDTH 6324\nHEIGHT 6324\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n" + bytes(1000),
        ),
        Case("pfm-float", "png", lambda: b"PF\n6324 6324\n-1.0\n" + bytes(1000)),
        Case(
            "qoi-40mp",
            "png",
            lambda: b"qoif" + struct.pack(">IIBB", 6324, 6324, 3, 0) + b"\xfd" * (6324 * 6324 // 62) + bytes(7) + b"\1",
        ),
        Case(
            "jpeg2000-j2k-4000x4000",
            "jpg",
            lambda: f.encode(
                flat(4000, 4000), "JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[200]
            ),
        ),
        Case("jpeg2000-jp2-header", "jpg", lambda: f.encode(flat(64, 64), "JPEG2000", no_jp2=False)),
        Case("avif-1024x1024", "webp", lambda: f.encode(flat(1024, 1024), "AVIF", quality=10, speed=10)),
        Case("dds-1000x1000", "bmp", lambda: f.encode(flat(1000, 1000), "DDS")),
        Case("im-40mp", "bmp", lambda: f.encode(big("L"), "IM")[:200_000]),
        Case("msp-6000x6000", "bmp", lambda: f.encode(flat(6000, 6000, "1"), "MSP")[:4_000_000]),
        Case("spider-2000x2000", "bmp", lambda: f.encode(flat(1000, 1000, "F"), "SPIDER")),
        Case("icns", "png", lambda: f.encode(flat(64, 64), "ICNS")),
        Case("eps-with-preview", "jpg", lambda: f.encode(flat(64, 64), "EPS")),
        Case("pdf", "png", lambda: f.encode(flat(64, 64), "PDF")),
        Case(
            "xbm-6000x6000",
            "bmp",
            lambda: (
                b"#define a_width 6000\n#define a_height 6000\nstatic char a_bits[] = {" + b"0x00," * 800_000 + b"};"
            ),
        ),
        Case(
            "xpm",
            "png",
            lambda: (
                b'/* XPM */\nstatic char *a[] = {\n"6324 6324 1 1",\n"a c #000000",\n'
                + b'"'
                + b"a" * 6324
                + b'",\n' * 600
                + b"};"
            ),
        ),
        Case(
            "fits-header",
            "png",
            lambda: (
                b"SIMPLE  =                    T".ljust(80)
                + b"BITPIX  =                    8".ljust(80)
                + b"NAXIS   =                    2".ljust(80)
                + b"NAXIS1  =                 6324".ljust(80)
                + b"NAXIS2  =                 6324".ljust(80)
                + b"END".ljust(80)
                + bytes(2480)
            ),
        ),
        Case(
            "dcx-pcx-container",
            "bmp",
            lambda: (
                struct.pack("<I", 987654321)
                + struct.pack("<I", 4 * 1024 + 4)
                + bytes(4 * 1023)
                + f.encode(flat(1000, 1000, "L"), "PCX")
            ),
        ),
        Case("blp-header", "png", lambda: b"BLP2" + struct.pack("<IBBBBII", 1, 2, 8, 7, 1, 6324, 6324) + bytes(200)),
        Case("palm-bitmap", "bmp", lambda: f.encode(flat(64, 64, "1"), "PALM")),
        Case("wmf-placeable-header", "png", lambda: b"\xd7\xcd\xc6\x9a" + bytes(18) + bytes(1000)),
        Case("emf-header", "png", lambda: b"\x01\0\0\0" + bytes(36) + b" EMF" + bytes(1000)),
        Case("heic-ftyp", "jpg", lambda: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(1000)),
        Case("jxl-codestream", "jpg", lambda: b"\xff\x0a" + bytes(1000)),
        Case("fli-header", "gif", lambda: struct.pack("<IHHHHH", 128 + 16, 0xAF11, 1, 6324, 6324, 8) + bytes(200)),
    ]


def _psd(width: int, height: int) -> bytes:
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    rows = struct.pack(">H", 1) + struct.pack(">H", 4) * (height * 3)
    return header + b"\0\0\0\0" * 3 + rows + (b"\x81\x00" * 50) * (height * 3 // 50 or 1)


def _ico(image: bytes, entries: int = 1) -> bytes:
    header = struct.pack("<HHH", 0, 1, entries)
    offset = 6 + 16 * entries
    directory = b"".join(struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(image), offset) for _ in range(entries))
    return header + directory + image


def foreign_random(rng: random.Random) -> Case:
    position = rng.randrange(len(_canonical("foreign")))
    cut = rng.choice([100, 1000, 100_000, MAX_BYTES])
    label = f"random-{_canonical('foreign')[position].label}-cut{cut}"
    return Case(label, rng.choice(["png", "jpg", "gif", "webp", "bmp"]), lambda: _built("foreign", position)[:cut])


# ====================================================================================== seeds and mutations

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
SIDES = (64, 224, 0, 1600)  # longest side; 0 keeps the photograph's own size (300-640 px)


def _variant(image: Image.Image, name: str) -> bytes:
    """One allowed format/mode/option combination, by name."""
    rgb = image.convert("RGB")
    if name.startswith("jpeg"):
        jpeg_options: dict[str, dict[str, object]] = {
            "jpeg-baseline-420": {"quality": 90},
            "jpeg-baseline-444": {"quality": 75, "subsampling": 0},
            "jpeg-progressive": {"quality": 85, "progressive": True},
            "jpeg-grey": {"quality": 85},
            "jpeg-cmyk": {"quality": 85},
            "jpeg-exif-rotated": {"quality": 85, "exif": f.exif([f.orientation(6)])},
            "jpeg-restart": {"quality": 85, "restart_marker_blocks": 4},
        }
        options = jpeg_options[name]
        source = rgb.convert("L") if name == "jpeg-grey" else rgb.convert("CMYK") if name == "jpeg-cmyk" else rgb
        return f.encode(source, "JPEG", **options)
    if name.startswith("png"):
        mode = name.split("-")[1]
        source = {
            "L": lambda: rgb.convert("L"),
            "LA": lambda: rgb.convert("LA"),
            "P": lambda: rgb.convert("P"),
            "RGB": lambda: rgb,
            "RGBA": lambda: _with_alpha(rgb),
            "I16": lambda: Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257),
            "1": lambda: rgb.convert("1"),
        }[mode]()
        options = {"transparency": 0} if name == "png-P-trns" else {}
        return f.encode(source, "PNG", **options)
    if name == "webp-lossy":
        return f.encode(rgb, "WEBP", quality=80)
    if name == "webp-lossless":
        return f.encode(rgb, "WEBP", lossless=True, method=0)
    if name == "webp-alpha":
        return f.encode(_with_alpha(rgb), "WEBP", quality=80)
    if name == "webp-animated":
        return f.encode(
            rgb,
            "WEBP",
            save_all=True,
            append_images=[rgb.rotate(90), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
            quality=60,
        )
    if name == "gif":
        return f.encode(rgb.convert("P"), "GIF")
    if name == "gif-animated":
        return f.encode(
            rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.rotate(90).convert("P")], duration=50
        )
    if name == "bmp-24":
        return f.encode(rgb, "BMP")
    if name == "bmp-8":
        return f.encode(rgb.convert("P"), "BMP")
    if name == "bmp-1":
        return f.encode(rgb.convert("1"), "BMP")
    if name == "bmp-32":
        return f.encode(_with_alpha(rgb), "BMP")
    if name == "bmp-rle8":
        return _bmp_rle8_encode(rgb.convert("P"))
    raise ValueError(name)


VARIANTS = (
    "jpeg-baseline-420",
    "jpeg-baseline-444",
    "jpeg-progressive",
    "jpeg-grey",
    "jpeg-cmyk",
    "jpeg-exif-rotated",
    "jpeg-restart",
    "png-L",
    "png-LA",
    "png-P",
    "png-P-trns",
    "png-RGB",
    "png-RGBA",
    "png-I16",
    "png-1",
    "webp-lossy",
    "webp-lossless",
    "webp-alpha",
    "webp-animated",
    "gif",
    "gif-animated",
    "bmp-24",
    "bmp-8",
    "bmp-1",
    "bmp-32",
    "bmp-rle8",
)


def _with_alpha(rgb: Image.Image) -> Image.Image:
    rgba = rgb.convert("RGBA")
    width, height = rgba.size
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    rgba.putalpha(Image.fromarray(ramp))
    return rgba


def _bmp_rle8_encode(image: Image.Image) -> bytes:
    """RLE8 BMP (Pillow writes none): encoded runs only, one EOL a row, rows bottom-up."""
    width, height = image.size
    pixels = np.asarray(image)
    body = bytearray()
    for row in pixels[::-1]:
        x = 0
        while x < width:
            run = 1
            while x + run < width and run < 255 and row[x + run] == row[x]:
                run += 1
            body += bytes((run, int(row[x])))
            x += run
        body += b"\0\0"
    body += b"\0\1"
    palette = image.getpalette() or []
    bgrx = b"".join(bytes((palette[i + 2], palette[i + 1], palette[i], 0)) for i in range(0, min(len(palette), 768), 3))
    return f.bmp(width, height, 8, bytes(body), compression=1, colours=len(bgrx) // 4, palette=bgrx)


@functools.lru_cache(maxsize=8)
def photo(name: str, side: int) -> Image.Image:
    from skimage import data as samples  # imported here: only the mutation categories need scikit-image

    image = Image.fromarray(getattr(samples, name)())
    if side:
        scale = side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
    return image


@functools.lru_cache(maxsize=512)
def seed_image(photo_name: str, side: int, variant: str) -> bytes:
    return _variant(photo(photo_name, side), variant)


def _pick_seed(rng: random.Random, family: str | None = None) -> tuple[str, bytes]:
    for _ in range(20):
        variant = rng.choice([v for v in VARIANTS if family is None or v.startswith(family)])
        name, side = rng.choice(PHOTOS), rng.choice(SIDES)
        data = seed_image(name, side, variant)
        if len(data) <= MAX_BYTES:
            return f"{name}{side or ''}-{variant}", data
    return f"{name}64-{variant}", seed_image(name, 64, variant)


INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING32 = (0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, MP40, MP40 + 1, 65535 * 610)


def _field_overwrite(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Overwrites one header field where the format puts it, keeping checksums valid so the edit is seen."""
    out = bytearray(data)
    if data.startswith(f.PNG_SIGNATURE) and len(data) > 33:
        field, (offset, size) = rng.choice(
            list(
                {"width": (16, 4), "height": (20, 4), "depth": (24, 1), "ctype": (25, 1), "interlace": (28, 1)}.items()
            )
        )
        value = rng.choice(INTERESTING32) if size == 4 else rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 255))
        out[offset : offset + size] = (value & (1 << 8 * size) - 1).to_bytes(size, "big")
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
        return f"png-{field}={value}", bytes(out)
    if data.startswith(b"\xff\xd8"):
        segments = f.jpeg_segments(data)
        sofs = [s for s in segments if 0xC0 <= s.marker <= 0xCF and s.marker not in (0xC4, 0xC8, 0xCC)]
        if sofs:
            field = rng.choice(["height", "width", "precision", "components", "sampling", "marker"])
            index = segments.index(sofs[0])
            payload = bytearray(sofs[0].payload)
            marker = sofs[0].marker
            if field == "height":
                payload[1:3] = struct.pack(">H", rng.choice((0, 1, 610, 65535)))
            elif field == "width":
                payload[3:5] = struct.pack(">H", rng.choice((0, 1, 610, 65535)))
            elif field == "precision":
                payload[0] = rng.choice((0, 2, 12, 16, 255))
            elif field == "components":
                payload[5] = rng.choice((0, 1, 2, 4, 10, 255))
            elif field == "sampling" and len(payload) > 7:
                payload[7] = rng.choice((0x00, 0x11, 0x44, 0x41, 0x14, 0xFF))
            else:
                marker = rng.choice((0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCA, 0xCB))
            segments[index] = f.Segment(marker, bytes(payload))
            return f"jpeg-sof-{field}", f.jpeg_join(segments) + data[len(f.jpeg_join(f.jpeg_segments(data))) :]
    if data.startswith(b"GIF") and len(data) > 13:
        field, (offset, fmt) = rng.choice(
            list({"screen-width": (6, "<H"), "screen-height": (8, "<H"), "flags": (10, "<B")}.items())
        )
        value = rng.choice((0, 1, 0xFF, 0xFFFF)) if fmt == "<H" else rng.randrange(256)
        struct.pack_into(fmt, out, offset, value & (0xFFFF if fmt == "<H" else 0xFF))
        descriptor = data.find(b",", 13)
        if descriptor > 0 and rng.random() < 0.5 and descriptor + 10 <= len(data):
            struct.pack_into("<HHHH", out, descriptor + 1, *(rng.choice((0, 1, 0xFFFF, 6324)) for _ in range(4)))
            field += "+frame"
        return f"gif-{field}={value}", bytes(out)
    if data.startswith(b"BM") and len(data) > 34:
        field, (offset, fmt) = rng.choice(
            list(
                {
                    "width": (18, "<i"),
                    "height": (22, "<i"),
                    "bpp": (28, "<H"),
                    "compression": (30, "<I"),
                    "colours": (46, "<I"),
                    "offset": (10, "<I"),
                    "header": (14, "<I"),
                }.items()
            )
        )
        choices = {
            "<i": (0, 1, -1, -(2**31), 2**31 - 1, MP40, 6324, -6324),
            "<H": (0, 1, 2, 4, 8, 16, 24, 32, 64),
            "<I": (0, 1, 2, 3, 4, 5, 6, 12, 40, 124, 256, 2**32 - 1),
        }
        value = rng.choice(choices[fmt])
        if offset + struct.calcsize(fmt) <= len(out):
            struct.pack_into(fmt, out, offset, value)
        return f"bmp-{field}={value}", bytes(out)
    if data.startswith(b"RIFF") and len(data) > 30:
        field = rng.choice(["riff-size", "chunk-size", "dims"])
        if field == "riff-size":
            struct.pack_into("<I", out, 4, rng.choice((0, 4, 2**31, 2**32 - 1)))
        elif field == "chunk-size":
            struct.pack_into("<I", out, 16, rng.choice((0, 1, 2**31, 2**32 - 1)))
        elif data[12:16] == b"VP8 " and len(data) > 30:
            struct.pack_into("<HH", out, 26, rng.choice((1, 0x3FFF, 0xFFFF)), rng.choice((1, 0x3FFF, 0xFFFF)))
        elif data[12:16] == b"VP8L" and len(data) > 25:
            bits = rng.choice((0x3FFF, 0, 0x1FFF)) | rng.choice((0x3FFF, 0, 0x1FFF)) << 14
            struct.pack_into("<I", out, 21, (struct.unpack_from("<I", out, 21)[0] & 0xF0000000) | bits)
        elif data[12:16] == b"VP8X":
            out[24:30] = f.u24(rng.choice((0, 6323, 16383, 2**24 - 1))) + f.u24(rng.choice((0, 6323, 16383, 2**24 - 1)))
        return f"webp-{field}", bytes(out)
    return "none", data


def _png_chunk_length(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    if data.startswith(f.PNG_SIGNATURE):
        chunks = f.png_chunks(data)
        if chunks:
            offset, kind, _ = rng.choice(chunks)
            value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 20)))
            struct.pack_into(">I", out, offset, value)
            return f"png-{kind.decode(errors='replace')}-length={value}", bytes(out)
    if data.startswith(b"\xff\xd8"):
        positions = [
            i
            for i in range(2, min(len(data) - 3, 100_000))
            if data[i] == 0xFF and data[i + 1] not in (0, 0xFF, *range(0xD0, 0xDA))
        ]
        if positions:
            at = rng.choice(positions)
            struct.pack_into(">H", out, at + 2, rng.choice((0, 1, 2, 0xFFFF, rng.randrange(1 << 16))))
            return f"jpeg-segment-length@{at}", bytes(out)
    return "none", data


def _duplicate_chunk(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Repeats one chunk/segment/scan many times, within the size cap."""
    if data.startswith(f.PNG_SIGNATURE):
        chunks = [c for c in f.png_chunks(data) if c[1] != b"IHDR"]
        if chunks:
            offset, kind, payload = rng.choice(chunks)
            piece = data[offset : offset + 12 + len(payload)]
            times = max(1, min(rng.choice((2, 100, 10_000)), (MAX_BYTES - len(data)) // max(len(piece), 1)))
            return f"png-{kind.decode(errors='replace')}-x{times}", data[:offset] + piece * times + data[
                offset + len(piece) :
            ]
    if data.startswith(b"\xff\xd8"):
        segments = f.jpeg_segments(data)
        if len(segments) > 2:
            index = rng.randrange(1, len(segments) - 1)
            piece = segments[index].to_bytes()
            times = max(1, min(rng.choice((2, 100, 10_000)), (MAX_BYTES - len(data)) // max(len(piece), 1)))
            return f"jpeg-{segments[index].marker:02X}-x{times}", f.jpeg_join(
                segments[:index]
            ) + piece * times + f.jpeg_join(segments[index + 1 :])
    if len(data) > 64:
        start = rng.randrange(len(data) - 32)
        piece = data[start : start + rng.choice((1, 8, 32))]
        times = max(1, min(rng.choice((2, 1000, 100_000)), (MAX_BYTES - len(data)) // len(piece)))
        return f"repeat@{start}x{times}", data[:start] + piece * times + data[start:]
    return "none", data


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation and its label."""
    kind = rng.choice(
        [
            "bitflip",
            "bitflip",
            "byte",
            "insert",
            "delete",
            "truncate",
            "field",
            "field",
            "length",
            "duplicate",
            "splice",
            "header-zap",
        ]
    )
    size = len(data)
    if size == 0:
        return "none", data
    out = bytearray(data)
    if kind == "bitflip":
        flips = rng.choice((1, 2, 8, 64))
        for _ in range(flips):
            pos = rng.randrange(size)
            out[pos] ^= 1 << rng.randrange(8)
        return f"bitflip{flips}", bytes(out)
    if kind == "byte":
        pos = rng.randrange(min(size, 2048)) if rng.random() < 0.7 else rng.randrange(size)
        out[pos] = rng.choice(INTERESTING)
        return f"byte@{pos}", bytes(out)
    if kind == "insert":
        pos = rng.randrange(size)
        blob = (
            rng.randbytes(rng.choice((1, 4, 100)))
            if rng.random() < 0.5
            else bytes([rng.choice(INTERESTING)]) * rng.choice((1, 1000, 100_000))
        )
        return f"insert{len(blob)}@{pos}", bytes(out[:pos] + blob + out[pos:])[:MAX_BYTES]
    if kind == "delete":
        pos = rng.randrange(size)
        length = rng.choice((1, 4, 100, 10_000))
        return f"delete{length}@{pos}", bytes(out[:pos] + out[pos + length :])
    if kind == "truncate":
        pos = rng.randrange(1, size) if rng.random() < 0.5 else rng.randrange(1, min(size, 200))
        return f"truncate@{pos}", bytes(out[:pos])
    if kind == "field":
        return _field_overwrite(data, rng)
    if kind == "length":
        return _png_chunk_length(data, rng)
    if kind == "duplicate":
        return _duplicate_chunk(data, rng)
    if kind == "splice":
        other_name, other = _pick_seed(rng)
        cut_a, cut_b = rng.randrange(size), rng.randrange(len(other))
        return f"splice@{cut_a}+{other_name}@{cut_b}", (data[:cut_a] + other[cut_b:])[:MAX_BYTES]
    pos = rng.randrange(min(size, 64))
    out[pos : pos + 8] = rng.randbytes(8)
    return f"header-zap@{pos}", bytes(out)


def _seed_item(rng: random.Random) -> tuple[str, str, bytes]:
    label, data = _pick_seed(rng)
    return label, label.split("-", 2)[1].replace("jpeg", "jpg"), data


def fix_png_crcs(data: bytes) -> bytes:
    """Recomputes every parseable chunk's CRC: without this nearly every PNG mutation dies at the first CRC
    check, and the decoder behind it never sees the mutated field."""
    out = bytearray(data)
    for offset, kind, payload in f.png_chunks(data):
        struct.pack_into(">I", out, offset + 8 + len(payload), zlib.crc32(kind + payload))
    return bytes(out)


def _mutant(family: str, rng: random.Random) -> tuple[str, str, bytes]:
    label, data = _pick_seed(rng, family)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        try:
            step, data = mutate(data, rng)
        except (struct.error, ValueError, IndexError):  # a format-aware step on bytes an earlier step broke
            step = "skipped"
        steps.append(step)
    if data.startswith(f.PNG_SIGNATURE) and rng.random() < 0.75:
        data = fix_png_crcs(data)
        steps.append("crc")
    return f"{label}-{'+'.join(steps)}", EXTENSIONS[family], data


# ============================================================================================== the schedule

CRAFTED: dict[str, tuple[Callable[[], list[Case]], Callable[[random.Random], Case]]] = {
    "png": (png_cases, png_random),
    "png-chunks": (png_chunk_cases, png_chunk_random),
    "apng": (apng_cases, apng_random),
    "jpeg": (jpeg_cases, jpeg_random),
    "jpeg-markers": (jpeg_marker_cases, jpeg_marker_random),
    "bmp": (bmp_cases, bmp_random),
    "gif": (gif_cases, gif_random),
    "webp": (webp_cases, webp_random),
    "polyglot": (polyglot_cases, polyglot_random),
    "foreign": (foreign_cases, foreign_random),
}
MUTANTS = {"mutant-jpeg": "jpeg", "mutant-png": "png", "mutant-webp": "webp", "mutant-gif": "gif", "mutant-bmp": "bmp"}
# Slots per cycle of 100 items. Each crafted category walks its canonical list within the first ~2,500 items
# and then draws random variants; mutations take three quarters of the slots, since they are cheap to decode
# (a campaign against a slow decoder is dominated by the crafted bombs) and where the unexpected turns up.
WEIGHTS = {
    "seed": 3,
    "png": 3,
    "png-chunks": 2,
    "apng": 1,
    "jpeg": 3,
    "jpeg-markers": 2,
    "bmp": 2,
    "gif": 2,
    "webp": 2,
    "polyglot": 2,
    "foreign": 2,
    "mutant-jpeg": 20,
    "mutant-png": 20,
    "mutant-webp": 10,
    "mutant-gif": 12,
    "mutant-bmp": 14,
}
CATEGORIES = tuple(WEIGHTS)


@functools.lru_cache(maxsize=1)
def _cycle() -> tuple[tuple[str, int], ...]:
    """The 100-slot cycle as (category, occurrence within the cycle), categories spread evenly through it
    (smooth weighted round-robin), so every window of ~100 items holds every category."""
    total = sum(WEIGHTS.values())
    credit = dict.fromkeys(WEIGHTS, 0)
    seen = dict.fromkeys(WEIGHTS, 0)
    slots = []
    for _ in range(total):
        for category, weight in WEIGHTS.items():
            credit[category] += weight
        chosen = max(credit, key=lambda c: credit[c])
        credit[chosen] -= total
        slots.append((chosen, seen[chosen]))
        seen[chosen] += 1
    return tuple(slots)


@functools.cache
def _canonical(category: str) -> list[Case]:
    return CRAFTED[category][0]()


@functools.lru_cache(maxsize=24)
def _built(category: str, position: int) -> bytes:
    """A canonical case's bytes, kept for the random variants that reuse them (some take a second to build)."""
    return _canonical(category)[position].build()


def item(seed: int, index: int) -> Item:
    """The corpus item at ``index`` for ``seed``; depends on nothing else."""
    cycle = _cycle()
    category, within = cycle[index % len(cycle)]
    occurrence = index // len(cycle) * WEIGHTS[category] + within
    rng = random.Random(f"{seed}:{index}")
    if category in CRAFTED:
        canonical = _canonical(category)
        case = canonical[occurrence] if occurrence < len(canonical) else CRAFTED[category][1](rng)
        label, ext, data = case.label, case.ext, case.build()
    elif category == "seed":
        label, ext, data = _seed_item(rng)
    else:
        label, ext, data = _mutant(MUTANTS[category], rng)
    if len(data) > MAX_BYTES:  # the server refuses these before decoding; keep the head, which is the attack
        label, data = label + "-cut", data[:MAX_BYTES]
    safe = "".join(c if c.isalnum() or c in "-_=+@,." else "_" for c in label)[:150]
    return Item(f"{index:05d}-{category}-{safe}.{ext}", category, data)


def generate(count: int, seed: int = 0, start: int = 0) -> Iterator[Item]:
    """Items ``start`` .. ``start + count - 1``, built one at a time."""
    for index in range(start, start + count):
        yield item(seed, index)


def canonical_count() -> int:
    return sum(len(_canonical(c)) for c in CRAFTED)


def write(items: Iterator[Item], out: Path) -> int:
    """Writes each item as ``out/<name>`` and an ``index.tsv`` (name, category, bytes, sha256); returns the count."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with (out / "index.tsv").open("w") as index:
        index.write("name\tcategory\tbytes\tsha256\n")
        for entry in items:
            (out / entry.name).write_bytes(entry.data)
            index.write(
                f"{entry.name}\t{entry.category}\t{len(entry.data)}\t{hashlib.sha256(entry.data).hexdigest()}\n"
            )
            written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the hostile image corpus.")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first index")
    parser.add_argument("--index", type=int, help="only this index (as in an item's name)")
    parser.add_argument("--out", type=Path, help="folder to write the items and index.tsv into")
    parser.add_argument("--list", action="store_true", help="print name, category and size instead of writing")
    args = parser.parse_args(argv)
    start, count = (args.index, 1) if args.index is not None else (args.start, args.count)
    items = generate(count, args.seed, start)
    if args.out is not None:
        written = write(items, args.out)
        print(f"wrote {written} items to {args.out}")
        return 0
    for entry in items:
        print(f"{entry.name}\t{entry.category}\t{len(entry.data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
