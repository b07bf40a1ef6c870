"""One sign-in for the three services: the console calls case-api and logistics-watcher (their real apps,
in process) for the signed-in person with a staff token each service verifies; what they answer comes back
word for word."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aftersales_shared import staff_tokens
from aftersales_shared.signing import private_text, public_text
from case_api.config import Settings as CaseApiSettings
from case_api_testing import Api, image, running_api
from console_testing import Browser, Console, running_console
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ops_console.config import Settings as ConsoleSettings
from ops_console.tokens import signing_key
from payout_testing import running_worker
from watcher_testing import Watcher, running_watcher


@dataclass
class Stack:
    console: Console
    api: Api
    watcher: Watcher
    key: Ed25519PrivateKey  # the console's signing key

    async def person(self, username: str, roles: list[str], shops: list[str] | None) -> Browser:
        await self.console.add_account(username, roles, shops, display_name=username.title() + " Li")
        return await self.console.browser(username)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """case-api and logistics-watcher trusting the console's key (from the data folder, as in development),
    on one frozen clock, and the console proxying to them in process."""
    console_dir, api_dir, watcher_dir = (tmp_path / d for d in ("console", "api", "watcher"))
    key = signing_key(ConsoleSettings(data_dir=console_dir))
    public = public_text(key.public_key())
    api_dir.mkdir()
    async for api in running_api(CaseApiSettings(data_dir=api_dir, staff_token_public_keys=public), api_dir):
        async with running_watcher(watcher_dir, staff_token_public_keys=public) as watcher:
            watcher.clock.set(api.clock.now())
            mounts = {
                "http://case-api": httpx.ASGITransport(app=api.app),
                "http://logistics-watcher": httpx.ASGITransport(app=watcher.app),
            }
            async with running_console(
                console_dir,
                clock=api.clock,
                mounts=mounts,
                case_api_url="http://case-api",
                logistics_watcher_url="http://logistics-watcher",
            ) as console:
                yield Stack(console, api, watcher, key)


async def open_refund_case(api: Api, shop: str = "shop-a", order_id: str = "o-1") -> dict:
    """A refund-only case waiting for support (`open`), made by the shop's storefront key."""
    who = "storefront" if shop == "shop-a" else "storefront_b"
    await api.put_order(order_id, who, shop_id=shop)
    opened = await api.open_case(who, order_id=order_id, remedy="refund_only", reason="other", amount="10.00")
    assert opened.status_code == 201, opened.text
    return opened.json()


class TestTheServicesKnowThePerson:
    async def test_a_support_person_approves_and_the_timeline_names_them(self, stack: Stack) -> None:
        case = await open_refund_case(stack.api)
        alice = await stack.person("alice", ["support"], ["shop-a"])
        approved = await alice.call(
            "POST",
            f"/api/case-api/v1/cases/{case['id']}/actions/approve",
            json={"expected_version": case["version"]},
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"
        timeline = await alice.call("GET", f"/api/case-api/v1/cases/{case['id']}/timeline")
        assert timeline.status_code == 200
        assert timeline.json()[-1]["actor"] == "staff:alice"
        # the same record, read by a machine's key
        direct = await stack.api.call("GET", f"/v1/cases/{case['id']}/timeline", "ops")
        assert direct.json()[-1]["actor"] == "staff:alice"

    async def test_an_admin_without_service_roles_is_refused_by_the_service(self, stack: Stack) -> None:
        case = await open_refund_case(stack.api)
        root = await stack.person("root", ["admin"], None)
        response = await root.call("GET", f"/api/case-api/v1/cases/{case['id']}")
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"

    async def test_a_support_persons_token_is_refused_an_ops_action(self, stack: Stack) -> None:
        alice = await stack.person("alice", ["support"], None)
        response = await alice.call("POST", "/api/logistics-watcher/v1/scans/run")
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
        bob = await stack.person("bob", ["ops"], None)
        assert (await bob.call("POST", "/api/logistics-watcher/v1/scans/run")).status_code == 200

    async def test_an_ops_person_cannot_take_a_support_action(self, stack: Stack) -> None:
        case = await open_refund_case(stack.api)
        bob = await stack.person("bob", ["ops"], None)
        url = f"/api/case-api/v1/cases/{case['id']}/actions/approve"
        response = await bob.call("POST", url, json={"expected_version": case["version"]})
        assert response.status_code == 403
        assert (await bob.call("GET", f"/api/case-api/v1/cases/{case['id']}")).json()["status"] == "open"

    async def test_a_person_of_shop_a_cannot_read_shop_b(self, stack: Stack) -> None:
        mine = await open_refund_case(stack.api, "shop-a", "o-a")
        theirs = await open_refund_case(stack.api, "shop-b", "o-b")
        alice = await stack.person("alice", ["support"], ["shop-a"])
        assert (await alice.call("GET", f"/api/case-api/v1/cases/{mine['id']}")).status_code == 200
        refused = await alice.call("GET", f"/api/case-api/v1/cases/{theirs['id']}")
        assert refused.status_code in (403, 404)
        listed = await alice.call("GET", "/api/case-api/v1/cases")
        assert [c["id"] for c in listed.json()["items"]] == [mine["id"]]
        assert (await alice.call("GET", "/api/case-api/v1/orders/o-b")).status_code in (403, 404)

    async def test_changed_roles_apply_to_the_next_call(self, stack: Stack) -> None:
        """Tokens are made per call from the account as it is now."""
        root = await stack.person("root", ["admin"], None)
        alice = await stack.person("alice", ["support"], None)
        assert (await alice.call("POST", "/api/logistics-watcher/v1/scans/run")).status_code == 403
        patched = await root.call("PATCH", "/api/accounts/alice", json={"roles": ["support", "ops"]})
        assert patched.status_code == 200
        assert (await alice.call("POST", "/api/logistics-watcher/v1/scans/run")).status_code == 200
        await root.call("PATCH", "/api/accounts/alice", json={"disabled": True})
        assert (await alice.call("GET", "/api/case-api/v1/cases")).status_code == 401


class TestTokensAtTheService:
    """Straight at case-api: only a genuine, current staff token passes, and every other is the 401 of a
    bad API key."""

    def token(self, key: Ed25519PrivateKey, stack: Stack, **changes: object) -> str:
        claims: dict = dict(
            username="alice",
            display_name="Alice",
            roles=["support"],
            shops=["shop-a"],
            now=stack.api.clock.now(),
            lifetime=timedelta(minutes=2),
        )
        claims.update(changes)
        return staff_tokens.issue(key, **claims)  # type: ignore[arg-type]

    async def status(self, stack: Stack, token: str) -> tuple[int, dict]:
        """The status and the problem, but for its `instance` (the request's own id)."""
        response = await stack.api.client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
        return response.status_code, {k: v for k, v in response.json().items() if k != "instance"}

    async def test_genuine_and_current_passes(self, stack: Stack) -> None:
        assert (await self.status(stack, self.token(stack.key, stack)))[0] == 200

    @pytest.mark.parametrize(
        "case",
        ["expired", "issued_later", "other_key", "tampered", "not_a_token"],
    )
    async def test_anything_else_is_the_same_401_as_a_bad_key(self, stack: Stack, case: str) -> None:
        now = stack.api.clock.now()
        token = {
            "expired": lambda: self.token(stack.key, stack, now=now - timedelta(minutes=3)),
            "issued_later": lambda: self.token(stack.key, stack, now=now + timedelta(minutes=2)),
            "other_key": lambda: self.token(Ed25519PrivateKey.generate(), stack),
            "tampered": lambda: _swap_claims(self.token(stack.key, stack), shops=None),
            "not_a_token": lambda: "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
        }[case]()
        status, body = await self.status(stack, token)
        _, bad_key = await self.status(stack, "ask_not-a-key")
        assert (status, body) == (401, bad_key)

    async def test_a_service_without_staff_keys_accepts_no_token(self, tmp_path: Path) -> None:
        key = Ed25519PrivateKey.generate()
        async for api in running_api(CaseApiSettings(data_dir=tmp_path), tmp_path):
            token = staff_tokens.issue(
                key,
                username="alice",
                display_name="Alice",
                roles=["support"],
                shops=None,
                now=api.clock.now(),
                lifetime=timedelta(minutes=2),
            )
            response = await api.client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401


def _swap_claims(token: str, **changes: object) -> str:
    """The token with its claims changed and its signature kept."""
    import base64
    import json

    header, claims, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    data.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


class TestProxy:
    async def test_a_policy_refusal_comes_back_word_for_word(self, stack: Stack) -> None:
        await stack.api.put_order("o-1", "storefront")
        stack.api.clock.advance(days=30)  # far beyond every window
        alice = await stack.person("alice", ["support"], None)
        body = {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "return_refund",
            "reason": "no_reason",
        }
        same = {"X-Request-ID": "req-proxy-1"}
        through = await alice.call("POST", "/api/case-api/v1/cases", json=body, headers=same)
        direct = await stack.api.call("POST", "/v1/cases", "support", json=body, headers=same)
        assert through.status_code == direct.status_code == 422
        assert through.headers["content-type"] == direct.headers["content-type"] == "application/problem+json"
        assert through.content == direct.content
        assert through.json()["code"] == "policy_refused" and through.json()["message_zh"]

    async def test_query_idempotency_key_and_if_match_reach_the_service(self, stack: Stack) -> None:
        await stack.api.put_order("o-1", "storefront")
        alice = await stack.person("alice", ["support"], None)
        body = {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "refund_only",
            "reason": "other",
            "amount": "10.00",
        }
        key = {"Idempotency-Key": "idem-1"}
        first = await alice.call("POST", "/api/case-api/v1/cases", json=body, headers=key)
        again = await alice.call("POST", "/api/case-api/v1/cases", json=body, headers=key)
        assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
        listed = await alice.call("GET", "/api/case-api/v1/cases", params={"status": "open", "limit": 1})
        assert [c["id"] for c in listed.json()["items"]] == [first.json()["id"]]
        none = await alice.call("GET", "/api/case-api/v1/cases", params={"status": "refunded"})
        assert none.json()["items"] == []

    async def test_a_register_download_keeps_its_type_and_name(self, stack: Stack) -> None:
        bob = await stack.person("bob", ["ops"], None)
        through = await bob.call("GET", "/api/case-api/v1/registers/cashback", params={"format": "csv"})
        direct = await stack.api.call("GET", "/v1/registers/cashback", "ops", params={"format": "csv"})
        assert through.status_code == 200
        for header in ("content-type", "content-disposition"):
            assert through.headers[header] == direct.headers[header]
        assert through.content == direct.content

    async def test_no_session_is_401_and_nothing_is_called(self, stack: Stack) -> None:
        response = await stack.console.client.get("/api/case-api/v1/cases")
        assert response.status_code == 401 and response.json()["code"] == "unauthenticated"

    async def test_a_change_without_the_csrf_token_is_refused_before_the_service(self, stack: Stack) -> None:
        await stack.api.put_order("o-1", "storefront")
        alice = await stack.person("alice", ["support"], None)
        body = {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "refund_only",
            "reason": "other",
            "amount": "10.00",
        }
        response = await alice.client.post("/api/case-api/v1/cases", json=body)
        assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
        assert (await stack.api.call("GET", "/v1/cases", "ops")).json()["items"] == []

    @pytest.mark.parametrize(
        "path", ["/api/nowhere/v1/cases", "/api/case-api/metrics", "/api/case-api/v1/../metrics"]
    )
    async def test_only_the_services_v1_paths(self, stack: Stack, path: str) -> None:
        alice = await stack.person("alice", ["support"], None)
        assert (await alice.call("GET", path)).status_code == 404

    async def test_a_service_that_does_not_answer_is_502(self, tmp_path: Path) -> None:
        async with running_console(tmp_path, case_api_url="http://127.0.0.1:9") as console:
            await console.add_account("alice", ["support"])
            alice = await console.browser("alice")
            response = await alice.call("GET", "/api/case-api/v1/cases")
            await alice.close()
        assert response.status_code == 502 and response.json()["code"] == "upstream_unavailable"

    async def test_evidence_goes_up_and_comes_back_byte_for_byte(self, stack: Stack) -> None:
        alice = await stack.person("alice", ["support"], None)
        photo = image(7)
        uploaded = await alice.call(
            "POST", "/api/case-api/v1/evidence", files={"file": ("photo.jpg", photo, "image/jpeg")}
        )
        assert uploaded.status_code == 201, uploaded.text
        evidence_id = uploaded.json()["id"]
        content = await alice.call("GET", f"/api/case-api/v1/evidence/{evidence_id}/content")
        assert content.status_code == 200 and content.content == photo
        assert content.headers["content-type"] == "image/jpeg"
        assert content.headers["x-content-type-options"] == "nosniff"


class TestPayoutWorker:
    async def test_a_support_person_cannot_flush_batches_an_ops_person_can(self, tmp_path: Path) -> None:
        key = Ed25519PrivateKey.generate()
        async for worker in running_worker(
            tmp_path / "worker", staff_token_public_keys=public_text(key.public_key())
        ):
            mounts = {"http://payout-worker": httpx.ASGITransport(app=worker.app)}
            async with running_console(
                tmp_path / "console",
                clock=worker.clock,
                mounts=mounts,
                payout_worker_url="http://payout-worker",
                token_signing_key=private_text(key),
            ) as console:
                await console.add_account("alice", ["support"])
                await console.add_account("bob", ["ops"])
                alice, bob = await console.browser("alice"), await console.browser("bob")
                refused = await alice.call("POST", "/api/payout-worker/v1/batches/flush")
                assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
                assert (await alice.call("GET", "/api/payout-worker/v1/payouts")).status_code == 200
                flushed = await bob.call("POST", "/api/payout-worker/v1/batches/flush")
                assert flushed.status_code == 202, flushed.text
                await alice.close()
                await bob.close()
