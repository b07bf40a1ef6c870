"""Staff accounts: Argon2id, the admin's API, the last admin, and bad input changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from console_testing import NOW, PASSWORD, Browser, Console
from ops_console import accounts
from ops_console.models import StaffAccount, StaffSession
from sqlmodel import func, select

PROBLEM = "application/problem+json"


def new(username: str = "bob", **changes: Any) -> dict[str, Any]:
    return {
        "username": username,
        "display_name": "Bob Zhang",
        "password": "a long enough one",
        "roles": ["support"],
        "shops": ["shop-a"],
        **changes,
    }


async def stored(console: Console, username: str) -> StaffAccount | None:
    async with console.app.state.sessions() as session:
        return await session.get(StaffAccount, username)


async def sessions_of(console: Console, username: str) -> int:
    async with console.app.state.sessions() as session:
        query = select(func.count()).where(StaffSession.username == username)
        return int((await session.exec(query)).one())


@pytest.fixture
async def root(console: Console) -> Browser:
    await console.add_account("root", ["admin"])
    return await console.browser("root")


class TestPasswords:
    async def test_argon2id_with_rfc_9106_parameters_and_a_salt_each(self) -> None:
        first, second = await accounts.hash_password(PASSWORD), await accounts.hash_password(PASSWORD)
        assert first.startswith("$argon2id$") and first != second
        parameters = extract_parameters(first)
        assert parameters.type is Type.ID
        assert (parameters.memory_cost, parameters.time_cost) == (65536, 3)

    async def test_matches(self) -> None:
        account = StaffAccount(
            username="a",
            display_name="A",
            password_hash=await accounts.hash_password(PASSWORD),
            roles=[],
            created_at=NOW,
            updated_at=NOW,
        )
        assert accounts.password_matches(account, PASSWORD)
        assert not accounts.password_matches(account, PASSWORD + " ")

    def test_an_unknown_user_costs_a_real_check(self, monkeypatch: pytest.MonkeyPatch) -> None:
        checked: list[str] = []
        real = PasswordHasher.verify

        def spy(self: PasswordHasher, hash: str, password: str) -> bool:
            checked.append(hash)
            return real(self, hash, password)

        monkeypatch.setattr(PasswordHasher, "verify", spy)
        assert not accounts.password_matches(None, PASSWORD)
        (used,) = checked
        assert used.startswith("$argon2id$v=19$m=65536,t=3")


class TestAccountsApi:
    async def test_an_admin_creates_and_lists(self, console: Console, root: Browser) -> None:
        made = await root.call("POST", "/api/accounts", json=new())
        assert made.status_code == 201, made.text
        body = made.json()
        assert {k: body[k] for k in ("username", "display_name", "roles", "shops", "disabled")} == {
            "username": "bob",
            "display_name": "Bob Zhang",
            "roles": ["support"],
            "shops": ["shop-a"],
            "disabled": False,
        }
        assert "password" not in made.text and "hash" not in made.text
        account = await stored(console, "bob")
        assert account is not None and account.password_hash.startswith("$argon2id$")
        listed = await root.call("GET", "/api/accounts")
        assert [a["username"] for a in listed.json()["items"]] == ["bob", "root"]
        assert (await console.sign_in("bob", "a long enough one")).status_code == 200

    async def test_every_shop_is_null_and_must_be_said(self, root: Browser) -> None:
        missing = await root.call(
            "POST", "/api/accounts", json={k: v for k, v in new().items() if k != "shops"}
        )
        assert missing.status_code == 422
        every = await root.call("POST", "/api/accounts", json=new(shops=None))
        assert every.status_code == 201 and every.json()["shops"] is None

    async def test_a_taken_username_is_409(self, root: Browser) -> None:
        assert (await root.call("POST", "/api/accounts", json=new())).status_code == 201
        again = await root.call("POST", "/api/accounts", json=new(display_name="Other"))
        assert again.status_code == 409 and again.json()["code"] == "account_exists"

    @pytest.mark.parametrize(
        "changes",
        [
            {"username": "Bob"},
            {"username": "bob smith"},
            {"username": "x" * 65},
            {"username": "../root"},
            {"roles": []},
            {"roles": ["storefront"]},
            {"shops": ["shop a"]},
            {"display_name": ""},
            {"display_name": "a\x00b"},
            {"password": 12345678},
        ],
    )
    async def test_bad_input_is_422_and_makes_nothing(
        self, console: Console, root: Browser, changes: dict[str, Any]
    ) -> None:
        response = await root.call("POST", "/api/accounts", json=new(**changes))
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
        assert [a["username"] for a in (await root.call("GET", "/api/accounts")).json()["items"]] == ["root"]

    async def test_a_short_password_is_refused_in_both_languages(self, root: Browser) -> None:
        response = await root.call("POST", "/api/accounts", json=new(password="seven77"))
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "weak_password" and body["message_zh"] and body["message_en"]

    async def test_only_admins(self, console: Console) -> None:
        await console.add_account("alice", ["support", "ops"])
        alice = await console.browser("alice")
        for method, path, body in (
            ("GET", "/api/accounts", None),
            ("POST", "/api/accounts", new()),
            ("PATCH", "/api/accounts/alice", {"roles": ["admin"]}),
        ):
            response = await alice.call(method, path, json=body)
            assert response.status_code == 403, (method, path)
            assert response.json()["code"] == "forbidden"
        assert (await stored(console, "alice")).roles == ["ops", "support"]  # type: ignore[union-attr]
        assert (await console.client.get("/api/accounts")).status_code == 401  # nobody signed in


class TestPatch:
    async def test_roles_shops_and_name(self, console: Console, root: Browser) -> None:
        await console.add_account("alice", ["support"], ["shop-a"])
        response = await root.call(
            "PATCH", "/api/accounts/alice", json={"roles": ["ops"], "shops": None, "display_name": "Alice W"}
        )
        assert response.status_code == 200
        assert (response.json()["roles"], response.json()["shops"]) == (["ops"], None)
        untouched = await root.call("PATCH", "/api/accounts/alice", json={"display_name": "Alice Wang"})
        assert untouched.json()["shops"] is None and untouched.json()["roles"] == ["ops"]

    async def test_disabling_signs_the_person_out_at_once(self, console: Console, root: Browser) -> None:
        await console.add_account("alice", ["support"])
        alice = await console.browser("alice")
        assert (await root.call("PATCH", "/api/accounts/alice", json={"disabled": True})).json()["disabled"]
        assert (await alice.call("GET", "/api/session")).status_code == 401
        assert await sessions_of(console, "alice") == 0
        assert (await console.sign_in("alice")).status_code == 401
        assert (await root.call("PATCH", "/api/accounts/alice", json={"disabled": False})).status_code == 200
        assert (await console.sign_in("alice")).status_code == 200

    async def test_a_password_reset_ends_the_persons_other_sessions(
        self, console: Console, root: Browser
    ) -> None:
        await console.add_account("alice", ["support"])
        alice = await console.browser("alice")
        reset = await root.call("PATCH", "/api/accounts/alice", json={"password": "a brand new secret"})
        assert reset.status_code == 200
        assert (await alice.call("GET", "/api/session")).status_code == 401
        assert (await console.sign_in("alice")).status_code == 401
        assert (await console.sign_in("alice", "a brand new secret")).status_code == 200

    async def test_ones_own_new_password_keeps_this_session(self, console: Console, root: Browser) -> None:
        other = await console.browser("root")
        assert (
            await root.call("PATCH", "/api/accounts/root", json={"password": "root's new secret"})
        ).is_success
        assert (await root.call("GET", "/api/session")).status_code == 200
        assert (await other.call("GET", "/api/session")).status_code == 401

    @pytest.mark.parametrize("change", [{"disabled": True}, {"roles": ["support"]}])
    async def test_the_last_admin_stays(
        self, console: Console, root: Browser, change: dict[str, Any]
    ) -> None:
        refused = await root.call("PATCH", "/api/accounts/root", json=change)
        assert refused.status_code == 409 and refused.json()["code"] == "last_admin"
        assert refused.json()["message_zh"] and refused.json()["message_en"]
        account = await stored(console, "root")
        assert account is not None and account.roles == ["admin"] and account.disabled_at is None
        assert (await root.call("GET", "/api/session")).status_code == 200
        await console.add_account("second", ["admin"])
        assert (await root.call("PATCH", "/api/accounts/root", json=change)).status_code == 200

    async def test_a_disabled_admin_does_not_count(self, console: Console, root: Browser) -> None:
        await console.add_account("second", ["admin"])
        assert (await root.call("PATCH", "/api/accounts/second", json={"disabled": True})).status_code == 200
        assert (await root.call("PATCH", "/api/accounts/root", json={"disabled": True})).status_code == 409

    async def test_no_such_account_is_404(self, root: Browser) -> None:
        response = await root.call("PATCH", "/api/accounts/nobody", json={"disabled": True})
        assert response.status_code == 404 and response.headers["content-type"] == PROBLEM

    @pytest.mark.parametrize(
        "body",
        [{"roles": []}, {"roles": ["root"]}, {"disabled": "maybe"}, {"password": "short"}, {"shops": "*"}],
    )
    async def test_bad_changes_change_nothing(
        self, console: Console, root: Browser, body: dict[str, Any]
    ) -> None:
        await console.add_account("alice", ["support"], ["shop-a"])
        before = await stored(console, "alice")
        response = await root.call("PATCH", "/api/accounts/alice", json=body)
        assert response.status_code == 422
        after = await stored(console, "alice")
        assert before is not None and after is not None
        assert (after.roles, after.shops, after.password_hash, after.disabled_at) == (
            before.roles,
            before.shops,
            before.password_hash,
            before.disabled_at,
        )
