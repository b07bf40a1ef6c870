"""Evidence is judged by decoding it, not by its first bytes (issue 11, item 4): photos must decode, videos
must have an MP4/MOV container with a duration, HEIC and AVIF are photos, decompression bombs are refused,
and a photo reused in another shop is flagged without naming that shop's order."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aftersales_shared import topics
from aftersales_shared.migrations import alembic_config, upgrade
from aftersales_shared.problems import Problem
from alembic import command
from case_api import evidence
from case_api_checks import assert_problem, outbox_rows, unchanged, upload
from case_api_testing import JPEG, SERVICE_DIR, Api, box, encoded, image, mp4, mvhd
from PIL import Image, features
from sqlalchemy.ext.asyncio import create_async_engine


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims `width` × `height` one-bit pixels, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def stored_files(api: Api) -> list[str]:
    folder = api.app.state.settings.data_dir / "evidence"
    return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def post(api: Api, data: bytes, name: str = "photo.jpg", declared: str = "image/jpeg") -> Any:
    return await api.call("POST", "/v1/evidence", "storefront", files={"file": (name, data, declared)})


async def accepted(api: Api, data: bytes, name: str = "photo.jpg", declared: str = "image/jpeg") -> Any:
    response = await post(api, data, name, declared)
    assert response.status_code == 201, response.text
    return response.json()


async def refused(api: Api, data: bytes, status: int, code: str, name: str = "photo.jpg") -> dict[str, Any]:
    """The upload is refused with this problem, and leaves no row and no file behind."""
    before = stored_files(api)
    async with unchanged(api):
        response = await post(api, data, name)
    assert stored_files(api) == before, "a refused upload left a file behind"
    problem = assert_problem(response, status, code)
    assert ".upload-" not in problem["detail"], "the detail names a file on the server"
    return problem


async def damaged_case(
    api: Api, evidence_ids: list[str], order_id: str = "o-1", who: str = "storefront"
) -> Any:
    response = await api.call(
        "POST",
        "/v1/cases",
        who,
        json={
            "order_id": order_id,
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "reship",
            "reason": "damaged",
            "evidence_ids": evidence_ids,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


class TestPhotosMustDecode:
    async def test_a_16_byte_file_with_a_jpeg_header_is_refused(self, api: Api) -> None:
        await refused(api, b"\xff\xd8\xff\xe0" + b"\x00" * 12, 422, "unreadable_image")

    async def test_a_text_file_starting_with_jpeg_bytes_is_refused(self, api: Api) -> None:
        text = b"\xff\xd8\xff\xe0" + "这不是照片, just some notes about the parcel\n".encode() * 40
        await refused(api, text, 422, "unreadable_image")

    async def test_a_truncated_jpeg_is_refused(self, api: Api) -> None:
        whole = encoded("JPEG", (256, 192), progressive=True)
        await refused(api, whole[: len(whole) * 3 // 4], 422, "unreadable_image")

    async def test_a_png_with_a_corrupt_chunk_is_refused(self, api: Api) -> None:
        png = bytearray(encoded("PNG", (32, 32)))
        png[40] ^= 0xFF  # inside IDAT: its CRC no longer matches
        await refused(api, bytes(png), 422, "unreadable_image", name="photo.png")

    @pytest.mark.parametrize(
        ("fmt", "content_type", "short"),
        [("JPEG", "image/jpeg", "jpeg"), ("PNG", "image/png", "png"), ("WEBP", "image/webp", "webp")],
    )
    async def test_a_photo_is_stored_with_its_real_format_and_size(
        self, api: Api, fmt: str, content_type: str, short: str
    ) -> None:
        body = await accepted(api, encoded(fmt, (40, 30)), name="whatever.bin", declared="text/plain")
        assert (body["content_type"], body["kind"], body["format"]) == (content_type, "image", short)
        assert (body["width"], body["height"], body["duration_seconds"]) == (40, 30, None)

    async def test_only_decoded_photos_count_toward_r_evidence(self, api: Api) -> None:
        await api.put_order()
        photos = [await upload(api, image(n)) for n in range(2)]
        await refused(api, b"\xff\xd8\xff\xe0" + b"\x00" * 12, 422, "unreadable_image")
        case = await damaged_case(api, photos)
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 1)


class TestPhonePhotos:
    async def test_a_heic_photo_is_an_image_with_its_size(self, api: Api) -> None:
        heic = encoded("HEIF", (40, 30))
        assert heic[4:12] == b"ftypheic"  # an ISO BMFF file, which the first-bytes check took for an MP4
        body = await accepted(api, heic, name="IMG_0001.HEIC", declared="image/heic")
        assert (body["content_type"], body["kind"], body["format"]) == ("image/heic", "image", "heic")
        assert (body["width"], body["height"]) == (40, 30)

    async def test_a_heic_photo_counts_as_one_photo_not_as_a_video(self, api: Api) -> None:
        await api.put_order()
        heic = (await accepted(api, encoded("HEIF", (40, 30)), name="IMG_0001.HEIC"))["id"]
        case = await damaged_case(api, [heic])
        # a video alone satisfies R-EVIDENCE; one photo of three does not
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 2)
        assert [(e["kind"], e["content_type"]) for e in case["evidence"]] == [("image", "image/heic")]

    async def test_a_truncated_heic_is_refused(self, api: Api) -> None:
        heic = encoded("HEIF", (40, 30))
        await refused(api, heic[: len(heic) - 100], 422, "unreadable_image", name="IMG_0002.HEIC")

    @pytest.mark.skipif(not features.check("avif"), reason="this Pillow wheel has no AVIF codec")
    async def test_an_avif_photo_is_an_image_with_its_size(self, api: Api) -> None:
        avif = encoded("AVIF", (40, 30))
        assert avif[4:12] == b"ftypavif"
        body = await accepted(api, avif, name="photo.avif", declared="video/mp4")
        assert (body["content_type"], body["kind"], body["format"]) == ("image/avif", "image", "avif")
        assert (body["width"], body["height"]) == (40, 30)


class TestDecompressionBombs:
    async def test_a_header_claiming_900_megapixels_is_refused(self, api: Api) -> None:
        problem = await refused(api, png_claiming(30_000, 30_000), 422, "image_too_large", name="bomb.png")
        assert problem["max_pixels"] == 64_000_000

    async def test_a_real_200_megapixel_png_of_24_kb_is_refused(self, api: Api) -> None:
        buffer = io.BytesIO()
        Image.new("1", (20_000, 10_000)).save(buffer, format="PNG")
        assert len(buffer.getvalue()) < 100_000  # small on the wire, 200 million pixels decoded
        await refused(api, buffer.getvalue(), 422, "image_too_large", name="bomb.png")

    async def test_just_over_the_pixel_limit_is_refused(self, api: Api) -> None:
        await refused(api, png_claiming(8_001, 8_000), 422, "image_too_large", name="big.png")


class TestVideosMustHaveAContainer:
    async def test_an_mp4_is_stored_with_its_duration(self, api: Api) -> None:
        body = await accepted(api, mp4(seconds=12.5), name="clip.mp4", declared="video/mp4")
        assert (body["content_type"], body["kind"], body["format"]) == ("video/mp4", "video", "mp4")
        assert (body["duration_seconds"], body["width"]) == (12.5, None)

    async def test_a_mov_from_a_phone_is_a_quicktime_video(self, api: Api) -> None:
        body = await accepted(
            api, mp4(seconds=3, brand=b"qt  "), name="IMG_0003.MOV", declared="video/quicktime"
        )
        assert (body["content_type"], body["format"], body["duration_seconds"]) == (
            "video/quicktime",
            "mov",
            3.0,
        )

    async def test_64_bit_boxes_and_a_version_1_header_are_read(self, api: Api) -> None:
        ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2avc1mp41")
        moov = box(b"moov", box(b"udta") + mvhd(90_000 * 61, timescale=90_000, version=1), large=True)
        mdat = (0).to_bytes(4, "big") + b"mdat" + b"\x00" * 256  # size 0: the box runs to the end of the file
        body = await accepted(api, ftyp + box(b"free") + moov + mdat, name="clip.mp4")
        assert (body["content_type"], body["duration_seconds"]) == ("video/mp4", 61.0)

    async def test_the_magic_number_alone_is_refused(self, api: Api) -> None:
        await refused(
            api, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, 422, "unreadable_video", name="clip.mp4"
        )

    async def test_an_mp4_without_moov_is_refused(self, api: Api) -> None:
        problem = await refused(api, mp4(with_moov=False), 422, "unreadable_video", name="clip.mp4")
        assert "moov" in problem["detail"]

    @pytest.mark.parametrize(
        ("name", "data"),
        [
            ("zero duration", mp4(seconds=0)),
            (
                "no timescale",
                box(b"ftyp", b"mp42\x00\x00\x00\x00mp42") + box(b"moov", mvhd(1000, timescale=0)),
            ),
            ("unknown duration", box(b"ftyp", b"mp42\x00\x00\x00\x00mp42") + box(b"moov", mvhd(0xFFFFFFFF))),
            ("moov without mvhd", box(b"ftyp", b"mp42\x00\x00\x00\x00mp42") + box(b"moov", box(b"trak"))),
            ("box past the end", mp4()[:-4] + b"\x00\x00\x01\x00mdat"),
            ("stray bytes", mp4() + b"\x00\x01"),
            (
                "truncated mvhd",
                box(b"ftyp", b"mp42\x00\x00\x00\x00mp42") + box(b"moov", box(b"mvhd", b"\x00" * 12)),
            ),
        ],
    )
    async def test_a_broken_container_is_refused(self, api: Api, name: str, data: bytes) -> None:
        await refused(api, data, 422, "unreadable_video", name="clip.mp4")

    async def test_an_unknown_brand_is_not_a_video(self, api: Api) -> None:
        data = box(b"ftyp", b"crx \x00\x00\x00\x01crx ") + box(b"moov", mvhd(1000))
        await refused(api, data, 415, "unsupported_media_type", name="clip.mp4")

    async def test_a_video_still_satisfies_r_evidence(self, api: Api) -> None:
        await api.put_order()
        clip = await upload(api, mp4(seconds=4), name="clip.mp4", content_type="video/mp4")
        case = await damaged_case(api, [clip])
        assert (case["status"], case["evidence_missing"]) == ("open", 0)


class TestReuseAcrossShops:
    async def test_a_photo_first_used_by_another_shop_is_flagged_without_its_order(self, api: Api) -> None:
        await api.put_order("o-a1")
        await api.put_order("o-b1", "storefront_b", shop_id="shop-b")
        await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a1")
        same_bytes = [await upload(api, image(n), "storefront_b") for n in range(3)]
        case = await damaged_case(api, same_bytes, "o-b1", "storefront_b")
        assert [(e["reused"], e["reused_from_order_id"]) for e in case["evidence"]] == [(True, None)] * 3
        for who in ("storefront_b", "support_b"):
            read = await api.call("GET", f"/v1/cases/{case['id']}", who)
            timeline = await api.call("GET", f"/v1/cases/{case['id']}/timeline", who)
            assert read.json()["evidence"][0]["reused"] is True
            assert "o-a1" not in read.text and "o-a1" not in timeline.text
        events = [row for row in await outbox_rows(api, topics.CASES) if row.key == "o-b1"]
        assert events and all(b"o-a1" not in row.payload for row in events)

    async def test_a_photo_reused_within_the_shop_names_the_order(self, api: Api) -> None:
        await api.put_order("o-a1")
        await api.put_order("o-a2")
        await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a1")
        case = await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a2")
        assert [(e["reused"], e["reused_from_order_id"]) for e in case["evidence"]] == [(True, "o-a1")] * 3

    async def test_the_same_shops_order_is_named_even_when_another_shop_used_the_photo_first(
        self, api: Api
    ) -> None:
        await api.put_order("o-b1", "storefront_b", shop_id="shop-b")
        await api.put_order("o-a1")
        await api.put_order("o-a2")
        await damaged_case(
            api, [await upload(api, image(n), "storefront_b") for n in range(3)], "o-b1", "storefront_b"
        )
        await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a1")
        case = await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a2")
        assert [(e["reused"], e["reused_from_order_id"]) for e in case["evidence"]] == [(True, "o-a1")] * 3

    async def test_a_new_photo_is_not_flagged(self, api: Api) -> None:
        await api.put_order()
        case = await damaged_case(api, [await upload(api, image(n)) for n in range(3)])
        assert [(e["reused"], e["reused_from_order_id"]) for e in case["evidence"]] == [(False, None)] * 3


EVIDENCE_LINKS = sa.table(
    "case_evidence", sa.column("order_id"), sa.column("reused"), sa.column("reused_from_order_id")
)
TIMELINE = sa.table("case_events", sa.column("case_id"), sa.column("action"), sa.column("data", sa.JSON))


class TestMigration0004:
    """Rows written before 0004 named another shop's order; the upgrade keeps the flag and drops the name."""

    async def test_another_shops_order_is_removed_from_links_and_timeline(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order("o-a1")
        await api.put_order("o-a2")
        await api.put_order("o-b1", "storefront_b", shop_id="shop-b")
        await damaged_case(api, [await upload(api, image(n)) for n in range(3)], "o-a1")
        cases = {}
        for order_id, who in (("o-b1", "storefront_b"), ("o-a2", "storefront")):
            case = await damaged_case(api, [], order_id, who)
            photos = [await upload(api, image(n), who) for n in range(3)]
            cases[order_id] = (await api.act(case, "attach_evidence", who, evidence_ids=photos)).json()["id"]

        url = api.app.state.settings.sqlalchemy_url
        await asyncio.to_thread(command.downgrade, alembic_config(SERVICE_DIR, url), "0003")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:  # what the code before 0004 stored: every order named
                await conn.execute(
                    sa.update(EVIDENCE_LINKS)
                    .where(EVIDENCE_LINKS.c.order_id != "o-a1")
                    .values(reused_from_order_id="o-a1")
                )
                for case_id in cases.values():
                    where = (TIMELINE.c.case_id == case_id) & (TIMELINE.c.action == "attach_evidence")
                    data = (await conn.execute(sa.select(TIMELINE.c.data).where(where))).scalar_one()
                    old = [
                        {"evidence_id": a["evidence_id"], "kind": a["kind"], "reused_from_order_id": "o-a1"}
                        for a in data["attached"]
                    ]
                    await conn.execute(
                        sa.update(TIMELINE).where(where).values(data={**data, "attached": old})
                    )
            await upgrade(SERVICE_DIR, url, "0004")
            async with engine.connect() as conn:
                links = (
                    await conn.execute(
                        sa.select(
                            EVIDENCE_LINKS.c.order_id,
                            EVIDENCE_LINKS.c.reused,
                            EVIDENCE_LINKS.c.reused_from_order_id,
                        )
                    )
                ).all()
                timeline = {
                    case_id: (
                        await conn.execute(
                            sa.select(TIMELINE.c.data).where(
                                (TIMELINE.c.case_id == case_id) & (TIMELINE.c.action == "attach_evidence")
                            )
                        )
                    ).scalar_one()["attached"]
                    for case_id in cases.values()
                }
        finally:
            await engine.dispose()
            await upgrade(SERVICE_DIR, url)
        assert sorted((o, bool(r), n) for o, r, n in links) == sorted(
            [("o-a1", False, None)] * 3 + [("o-a2", True, "o-a1")] * 3 + [("o-b1", True, None)] * 3
        )
        assert [(a["reused"], a["reused_from_order_id"]) for a in timeline[cases["o-b1"]]] == [
            (True, None)
        ] * 3
        assert [(a["reused"], a["reused_from_order_id"]) for a in timeline[cases["o-a2"]]] == [
            (True, "o-a1")
        ] * 3


def test_the_test_jpeg_is_a_real_photo() -> None:
    with Image.open(io.BytesIO(image(7))) as img:
        img.load()
        assert (img.format, img.size) == ("JPEG", (8, 8))
    assert image(7) != image(8) and image(7) != JPEG


def test_at_most_two_photos_are_decoded_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Decoding a photo at the pixel limit takes hundreds of MB: uploads beyond two wait their turn."""
    running, peak, lock = 0, 0, threading.Lock()

    def slow_decode(path: Path) -> evidence.Content:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return evidence.Content("image/jpeg", "image", "jpeg", 8, 8)

    monkeypatch.setattr(evidence, "_decode_image", slow_decode)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: evidence.inspect(tmp_path / "x", "image"), range(6)))
    assert len(results) == 6 and peak == 2


@pytest.mark.parametrize("seed", ["JPEG", "PNG", "WEBP", "HEIF", "AVIF", "MP4"])
def test_damaged_files_are_stored_or_refused_with_a_4xx(seed: str, tmp_path: Path) -> None:
    """Random byte changes, cuts and insertions in a valid file: each is proven or refused, never a 500."""
    if seed == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow wheel has no AVIF codec")
    original = mp4(3) if seed == "MP4" else encoded(seed, (24, 16))
    rng = random.Random(seed)
    outcomes: set[str] = set()
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[at] = rng.randrange(256)
            elif rng.random() < 0.5:
                del data[max(at, 1) :]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
        kind = evidence.sniff(bytes(data[:1024]))
        if kind is None:
            outcomes.add("415")
            continue
        (tmp_path / "f").write_bytes(data)
        try:
            evidence.inspect(tmp_path / "f", kind)
            outcomes.add("stored")
        except Problem as problem:
            assert 400 <= problem.status < 500, problem.body()
            outcomes.add(problem.code)
    assert outcomes & {"unreadable_image", "unreadable_video"}, outcomes
