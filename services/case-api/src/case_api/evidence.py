"""Evidence files: the type is read from the content and proven by decoding it, never taken from the name;
size and pixel count are bounded.

Photos are decoded with Pillow (JPEG, PNG, WebP, and AVIF natively; HEIC/HEIF through pillow-heif's opener).
Videos (MP4 and MOV, both ISO BMFF) are proven by walking their boxes: an `ftyp` with a known brand and a
`moov` whose `mvhd` gives a positive duration. HEIC and AVIF are ISO BMFF too; their brands make them images.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pillow_heif
from aftersales_shared.problems import Problem
from fastapi import UploadFile
from PIL import Image, UnidentifiedImageError

_CHUNK = 1 << 16
# A 50-megapixel phone photo fits; decoding is refused above this (a decompression bomb).
MAX_IMAGE_PIXELS = 64_000_000
# A phone's file has a handful of top-level boxes and a few dozen in `moov`: more is an attack, not a video.
_MAX_BOXES = 10_000
# A photo at the pixel limit takes up to 256 MB decoded (4 bytes a pixel): two at a time per process at most.
_DECODING = threading.BoundedSemaphore(2)

pillow_heif.register_heif_opener()
# Pillow warns from 89 million pixels and refuses from twice that; we refuse from 64 million, after opening.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Pillow format name → (content type, short format); HEIF is split by brand below.
_DECODED: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpeg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "AVIF": ("image/avif", "avif"),
}
_PILLOW_FORMATS = [*_DECODED, "HEIF"]
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis", b"avio"}
_IMAGE_BRANDS = _HEIC_BRANDS | _AVIF_BRANDS | {b"mif1", b"mif2", b"msf1"}
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {
    *(b"iso" + bytes([c]) for c in b"m23456789"),
    b"mp41",
    b"mp42",
    b"mp71",
    b"avc1",
    b"M4V ",
    b"M4VH",
    b"M4VP",
    b"MSNV",
    b"dash",
}


@dataclass(frozen=True)
class Content:
    """What a file proved to be once decoded or parsed."""

    content_type: str
    kind: str  # image or video
    format: str  # jpeg, png, webp, heic, heif, avif, mp4, mov
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    content: Content
    size: int
    path: Path


def unsupported() -> Problem:
    return Problem(
        415,
        "unsupported_media_type",
        "Unsupported file type",
        "evidence must be a JPEG, PNG, WebP, HEIC/HEIF or AVIF photo, or an MP4 or MOV video",
    )


def unreadable(kind: str, why: str) -> Problem:
    return Problem(
        422, f"unreadable_{kind}", f"Unreadable {kind}", f"the file is not a readable {kind}: {why}"
    )


def _ftyp_brands(head: bytes) -> list[bytes]:
    """The major and compatible brands of the leading `ftyp` box (as far as `head` holds it)."""
    size = int.from_bytes(head[0:4], "big")
    end = min(size, len(head)) if size >= 16 else min(16, len(head))
    return [head[8:12], *(head[i : i + 4] for i in range(16, end - 3, 4))]


def sniff(head: bytes) -> str | None:
    """The kind a file claims by its first bytes (image or video); decoding proves it later."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brands = set(_ftyp_brands(head))
        if brands & _IMAGE_BRANDS:
            return "image"
        if brands & (_MP4_BRANDS | _MOV_BRANDS):
            return "video"
    return None


def inspect(path: Path, kind: str) -> Content:
    """Prove the stored file is what it claims: decode a photo, parse a video's container."""
    if kind != "image":
        return _parse_video(path)
    with _DECODING:
        return _decode_image(path)


def _decode_image(path: Path) -> Content:
    try:
        with Image.open(path, formats=_PILLOW_FORMATS) as img:
            decoded, (width, height) = img.format or "", img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(width, height)
            img.verify()  # checks what the format allows without decoding (PNG chunk CRCs)
        # verify() leaves the image unusable and does not decode the pixels: decode them on a fresh open.
        with Image.open(path, formats=[decoded]) as img:
            if decoded == "JPEG":
                # libjpeg still reads every scan at 1/8 scale, so truncation is caught with 1/64 of the memory
                img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            img.load()
    except Problem:
        raise
    except Image.DecompressionBombError as error:
        raise Problem(
            422, "image_too_large", "Image too large", str(error), max_pixels=MAX_IMAGE_PIXELS
        ) from error
    except UnidentifiedImageError as error:
        raise unreadable("image", "not a JPEG, PNG, WebP, HEIC/HEIF or AVIF image") from error
    except Exception as error:  # whatever a decoder raises on hostile bytes means "unreadable"
        why = str(error).replace(str(path), "the file") or type(error).__name__  # never show our paths
        raise unreadable("image", why) from error
    if decoded == "HEIF":
        with path.open("rb") as f:
            brands = set(_ftyp_brands(f.read(256)))
        content_type, short = ("image/heic", "heic") if brands & _HEIC_BRANDS else ("image/heif", "heif")
    else:
        content_type, short = _DECODED[decoded]
    return Content(content_type, "image", short, width=width, height=height)


def _too_large(width: int, height: int) -> Problem:
    return Problem(
        422,
        "image_too_large",
        "Image too large",
        f"{width}×{height} pixels is over the limit of {MAX_IMAGE_PIXELS}",
        max_pixels=MAX_IMAGE_PIXELS,
    )


class _Malformed(ValueError):
    pass


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """ISO BMFF boxes between `start` and `end`: (type, payload start, box end). Size 1 means a 64-bit
    size follows the type; size 0 means the box runs to `end`."""
    pos, count = start, 0
    while pos < end:
        count += 1
        if count > _MAX_BOXES:
            raise _Malformed("too many boxes")
        if end - pos < 8:
            raise _Malformed(f"{end - pos} stray bytes at offset {pos}")
        f.seek(pos)
        header = f.read(8)
        size, box_type, header_size = int.from_bytes(header[:4], "big"), header[4:8], 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                raise _Malformed(f"truncated size of {box_type!r} at offset {pos}")
            size, header_size = int.from_bytes(large, "big"), 16
        elif size == 0:
            size = end - pos
        if size < header_size or pos + size > end:
            raise _Malformed(f"box {box_type!r} at offset {pos} runs past its container")
        yield box_type, pos + header_size, pos + size
        pos += size


def _duration(f: BinaryIO, start: int, end: int) -> float:
    """Seconds from an `mvhd` payload: version 0 has 32-bit times, version 1 64-bit ones."""
    f.seek(start)
    body = f.read(min(end - start, 32))
    version = body[0] if body else -1
    if version == 0 and len(body) >= 20:
        timescale, duration = int.from_bytes(body[12:16], "big"), int.from_bytes(body[16:20], "big")
        unknown = 0xFFFFFFFF
    elif version == 1 and len(body) >= 32:
        timescale, duration = int.from_bytes(body[20:24], "big"), int.from_bytes(body[24:32], "big")
        unknown = 0xFFFFFFFFFFFFFFFF
    else:
        raise _Malformed("mvhd is truncated or of an unknown version")
    if timescale == 0 or duration == 0 or duration == unknown:
        raise _Malformed(f"no duration (timescale {timescale}, duration {duration})")
    return duration / timescale


def _parse_video(path: Path) -> Content:
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            brands: list[bytes] | None = None
            seconds: float | None = None
            for box_type, payload, box_end in _boxes(f, 0, end):
                if brands is None:
                    if box_type != b"ftyp" or box_end - payload < 8:
                        raise _Malformed("the file does not start with an ftyp box")
                    f.seek(payload)
                    raw = f.read(min(box_end - payload, 1024))
                    brands = [raw[0:4], *(raw[i : i + 4] for i in range(8, len(raw) - 3, 4))]
                elif box_type == b"moov":
                    if seconds is not None:
                        raise _Malformed("more than one moov box")
                    mvhd = [(p, e) for t, p, e in _boxes(f, payload, box_end) if t == b"mvhd"]
                    if len(mvhd) != 1:
                        raise _Malformed("moov has no mvhd box")
                    seconds = _duration(f, *mvhd[0])
    except _Malformed as error:
        raise unreadable("video", str(error)) from error
    if brands is None:
        raise unreadable("video", "no ftyp box")
    if brands[0] in _MOV_BRANDS:
        content_type, short = "video/quicktime", "mov"
    elif set(brands) & _MP4_BRANDS:
        content_type, short = "video/mp4", "mp4"
    elif set(brands) & _MOV_BRANDS:
        content_type, short = "video/quicktime", "mov"
    else:
        raise unreadable("video", f"unknown brands {b', '.join(brands)!r}")
    if seconds is None:
        raise unreadable("video", "no moov box (no duration, no tracks)")
    return Content(content_type, "video", short, duration_seconds=round(seconds, 3))


async def store(upload: UploadFile, folder: Path, max_bytes: int, max_image_bytes: int) -> StoredFile:
    """Stream the upload to a temporary file, checking type and size, prove its content by decoding it,
    then keep it under its sha256."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    kind: str | None = None
    tmp = folder / f".upload-{os.getpid()}-{id(upload)}"
    try:
        with tmp.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                if size == 0:
                    kind = sniff(chunk[:1024])
                    if kind is None:
                        raise unsupported()
                size += len(chunk)
                limit = max_image_bytes if kind == "image" else max_bytes
                if size > limit:
                    raise Problem(
                        413,
                        "file_too_large",
                        "File too large",
                        f"{kind or 'file'}s are limited to {limit} bytes",
                        limit=limit,
                    )
                digest.update(chunk)
                out.write(chunk)
        if kind is None:
            raise Problem(422, "empty_file", "Empty file", "the uploaded file is empty")
        content = await asyncio.to_thread(inspect, tmp, kind)
        sha = digest.hexdigest()
        final = folder / sha[:2] / sha
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        return StoredFile(sha, content, size, final)
    finally:
        tmp.unlink(missing_ok=True)
