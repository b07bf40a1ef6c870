"""Evidence files: the type is read from the content, never from the name; size is bounded."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aftersales_shared.problems import Problem
from fastapi import UploadFile

_CHUNK = 1 << 16


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    content_type: str
    kind: str  # image or video
    size: int
    path: Path


def sniff(head: bytes) -> tuple[str, str] | None:
    """(content type, kind) from the first bytes: JPEG, PNG, WebP or MP4."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "image"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "image"
    if head[4:8] == b"ftyp":
        return "video/mp4", "video"
    return None


async def store(upload: UploadFile, folder: Path, max_bytes: int, max_image_bytes: int) -> StoredFile:
    """Stream the upload to a temporary file, checking type and size, then keep it under its sha256."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    detected: tuple[str, str] | None = None
    tmp = folder / f".upload-{os.getpid()}-{id(upload)}"
    try:
        with tmp.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                if size == 0:
                    detected = sniff(chunk[:16])
                    if detected is None:
                        raise Problem(
                            415,
                            "unsupported_media_type",
                            "Unsupported file type",
                            "evidence must be a JPEG, PNG or WebP image or an MP4 video",
                        )
                size += len(chunk)
                limit = max_image_bytes if detected and detected[1] == "image" else max_bytes
                if size > limit:
                    raise Problem(
                        413,
                        "file_too_large",
                        "File too large",
                        f"{detected[1] if detected else 'file'}s are limited to {limit} bytes",
                        limit=limit,
                    )
                digest.update(chunk)
                out.write(chunk)
        if detected is None:
            raise Problem(422, "empty_file", "Empty file", "the uploaded file is empty")
        sha = digest.hexdigest()
        final = folder / sha[:2] / sha
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        return StoredFile(sha, detected[0], detected[1], size, final)
    finally:
        tmp.unlink(missing_ok=True)
