"""GET /v1/evidence/{id}/content: the file behind a staff member's evidence thumbnail, to the roles and
shops that may see it, with the type proven at upload."""

from __future__ import annotations

from case_api_checks import assert_problem, upload
from case_api_testing import MP4, Api, image


class TestEvidenceContent:
    async def test_support_and_ops_read_the_file_as_uploaded(self, api: Api) -> None:
        photo = image(1)
        evidence_id = await upload(api, photo, "storefront")
        for who in ("support", "ops", "storefront", "admin"):
            response = await api.call("GET", f"/v1/evidence/{evidence_id}/content", who)
            assert response.status_code == 200, (who, response.text)
            assert response.content == photo
            assert response.headers["content-type"] == "image/jpeg"
            assert response.headers["x-content-type-options"] == "nosniff"

    async def test_a_video_comes_with_its_proven_type_whatever_its_name_said(self, api: Api) -> None:
        evidence_id = await upload(api, MP4, "storefront", name="clip.jpg", content_type="image/jpeg")
        response = await api.call("GET", f"/v1/evidence/{evidence_id}/content", "support")
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert response.content == MP4

    async def test_another_shop_sees_no_such_file(self, api: Api) -> None:
        evidence_id = await upload(api, image(2), "storefront")
        for who in ("storefront_b", "support_b"):
            response = await api.call("GET", f"/v1/evidence/{evidence_id}/content", who)
            assert_problem(response, 404, "not_found")

    async def test_roles_without_evidence_and_callers_without_a_key_are_refused(self, api: Api) -> None:
        evidence_id = await upload(api, image(3), "storefront")
        assert_problem(
            await api.call("GET", f"/v1/evidence/{evidence_id}/content", "warehouse"), 403, "forbidden"
        )
        anonymous = await api.client.get(f"/v1/evidence/{evidence_id}/content")
        assert anonymous.status_code == 401

    async def test_unknown_and_malformed_ids(self, api: Api) -> None:
        assert_problem(await api.call("GET", "/v1/evidence/evd_nothing/content", "support"), 404, "not_found")
        response = await api.call("GET", "/v1/evidence/" + "x" * 500 + "/content", "support")
        assert response.status_code == 422

    async def test_a_file_gone_from_the_disk_is_a_404_not_a_crash(self, api: Api) -> None:
        evidence_id = await upload(api, image(4), "storefront")
        for path in (api.app.state.settings.data_dir / "evidence").rglob("*"):
            if path.is_file():
                path.unlink()
        assert_problem(
            await api.call("GET", f"/v1/evidence/{evidence_id}/content", "support"), 404, "not_found"
        )
