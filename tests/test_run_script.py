"""scripts/run.py (`make run`): what it tells the operator before it starts anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestKafkaCredentialsNote:
    def test_kafka_without_security_settings_points_to_kafka_sh_env(self) -> None:
        note = run_script().kafka_credentials_note({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"})
        assert note and 'eval "$(infra/kafka/kafka.sh env)"' in note

    def test_nothing_to_say_with_the_protocol_set_or_without_kafka(self) -> None:
        note = run_script().kafka_credentials_note
        assert note({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}) is None
        assert note({}) is None


class TestConsoleSignIn:
    def test_the_services_trust_the_consoles_key_in_the_data_folder(self, tmp_path: Path) -> None:
        from aftersales_shared.staff_tokens import staff_token_verifier
        from ops_console.config import Settings
        from ops_console.tokens import signing_key

        env: dict[str, str] = {}
        run_script().staff_token_keys(env, tmp_path)
        console_key = signing_key(Settings(data_dir=tmp_path))  # what the console signs with, started later
        verifier = staff_token_verifier(env["STAFF_TOKEN_PUBLIC_KEYS"])
        assert verifier is not None and len(verifier.keys) == 1
        assert (
            next(iter(verifier.keys.values())).public_bytes_raw()
            == console_key.public_key().public_bytes_raw()
        )

    def test_a_configured_key_and_configured_public_keys_are_kept(self, tmp_path: Path) -> None:
        from aftersales_shared.signing import parse_private_key, private_text, public_text
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = private_text(Ed25519PrivateKey.generate())
        env = {"OPS_CONSOLE_TOKEN_SIGNING_KEY": private}
        run_script().staff_token_keys(env, tmp_path)
        assert env["STAFF_TOKEN_PUBLIC_KEYS"] == public_text(parse_private_key(private).public_key())
        assert not list(tmp_path.iterdir())  # no pair made in the data folder
        given = {"STAFF_TOKEN_PUBLIC_KEYS": public_text(Ed25519PrivateKey.generate().public_key())}
        env = {**given, "OPS_CONSOLE_TOKEN_SIGNING_KEY": private}
        run_script().staff_token_keys(env, tmp_path)
        assert env["STAFF_TOKEN_PUBLIC_KEYS"] == given["STAFF_TOKEN_PUBLIC_KEYS"]

    def test_the_first_admins_password_is_made_once(self, tmp_path: Path, monkeypatch: Any) -> None:
        monkeypatch.delenv("DEV_ADMIN_PASSWORD", raising=False)
        first = run_script().dev_admin_password(tmp_path)
        assert len(first) >= 16 and run_script().dev_admin_password(tmp_path) == first
        assert (tmp_path / "dev-admin-password").stat().st_mode & 0o077 == 0
        monkeypatch.setenv("DEV_ADMIN_PASSWORD", "chosen by the developer")
        assert run_script().dev_admin_password(tmp_path) == "chosen by the developer"
