from __future__ import annotations

from typing import Annotated

import anyio
from aftersales_shared.auth import Role
from aftersales_shared.fields import ResourceIdPath
from aftersales_shared.ids import new_id
from aftersales_shared.problems import not_found
from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import FileResponse

from .. import evidence as files
from ..models import Evidence
from ..schemas import EvidencePublic
from .deps import ContextDep

router = APIRouter(prefix="/v1/evidence", tags=["evidence"])


@router.post(
    "",
    status_code=201,
    response_model=EvidencePublic,
    summary="Upload a photo or video",
    responses={
        413: {"description": "too large (bytes)"},
        415: {"description": "neither a JPEG, PNG, WebP, HEIC/HEIF or AVIF photo nor an MP4 or MOV video"},
        422: {
            "description": "`unreadable_image` (a photo that does not decode), `unreadable_video` (no `ftyp` "
            "with a known brand, or no `moov`/`mvhd` with a duration), `image_too_large` (too many pixels: "
            "a decompression bomb), `empty_file`"
        },
    },
)
async def upload(
    request: Request,
    ctx: ContextDep,
    file: Annotated[
        UploadFile, File(description="a JPEG, PNG, WebP, HEIC/HEIF or AVIF photo, or an MP4 or MOV video")
    ],
) -> EvidencePublic:
    """The type is read from the content and proven: a photo is decoded (its format and size are kept), a
    video's container is parsed (its duration is kept); only what passes counts as evidence (R-EVIDENCE).
    The sha256 is kept so a file reused on another order is flagged."""
    ctx.principal.require(Role.storefront, Role.support)
    settings = request.app.state.settings
    stored = await files.store(
        file, settings.data_dir / "evidence", settings.evidence_max_bytes, settings.evidence_max_image_bytes
    )
    shops = None if ctx.principal.shops is None else sorted(ctx.principal.shops)
    item = Evidence(
        id=new_id("evd"),
        key_id=ctx.principal.key_id,
        shops=shops,
        sha256=stored.sha256,
        content_type=stored.content.content_type,
        kind=stored.content.kind,
        format=stored.content.format,
        width=stored.content.width,
        height=stored.content.height,
        duration_seconds=stored.content.duration_seconds,
        size=stored.size,
        path=str(stored.path),
        filename=file.filename,
        uploaded_by=ctx.principal.name,
        created_at=ctx.now,
    )
    ctx.session.add(item)
    await ctx.session.commit()
    return EvidencePublic(**item.model_dump())


@router.get(
    "/{evidence_id}/content",
    summary="The photo or video itself",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/*": {}, "video/*": {}}, "description": "the file, as uploaded"},
        404: {"description": "no such file for this key's shops"},
    },
)
async def content(evidence_id: ResourceIdPath, ctx: ContextDep) -> FileResponse:
    """For the staff's evidence thumbnails and the uploader's shops; served with the type proven when it
    was uploaded, never sniffed. A file of another shop is a 404, as if it did not exist."""
    ctx.principal.require(Role.storefront, Role.support, Role.ops)
    item = await ctx.session.get(Evidence, evidence_id)
    shops = ctx.principal.shops
    visible = item is not None and (shops is None or bool(item.shops and shops & set(item.shops)))
    if item is None or not visible or not await anyio.Path(item.path).is_file():
        raise not_found("evidence", evidence_id)
    return FileResponse(
        item.path,
        media_type=item.content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )
