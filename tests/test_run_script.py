"""scripts/run.py (`make run`): what it tells the operator before it starts anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

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
