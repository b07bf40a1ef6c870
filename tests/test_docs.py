"""The operator's guide names every setting the services read, so none is configurable in secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from aftersales_shared.settings import ServiceSettings
from case_api.config import Settings as CaseApiSettings
from logistics_watcher.config import Settings as WatcherSettings
from ops_console.config import Settings as ConsoleSettings
from payout_worker.config import Settings as PayoutSettings
from pydantic import AliasChoices

GUIDE = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
# Named once for all services in the guide, as <SERVICE>_HOST, <SERVICE>_PORT, <SERVICE>_DATABASE_NAME.
GENERIC = {"service_name", "host", "port", "database_name"}


def variables(settings: type[ServiceSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        if name in GENERIC:
            continue
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            alias = alias.choices[0]
        names.add(alias if isinstance(alias, str) else (prefix + name).upper())
    return names


@pytest.mark.parametrize("settings", [CaseApiSettings, WatcherSettings, PayoutSettings])
def test_every_setting_is_in_the_configuration_tables(settings: type[ServiceSettings]) -> None:
    missing = {v for v in variables(settings) if f"`{v}`" not in GUIDE}
    assert not missing, f"docs/operations.md does not document {sorted(missing)}"


def test_the_consoles_own_settings_are_in_its_table() -> None:
    """ops-console reads the shared database and logging settings but no Kafka one: its own are checked."""
    own = {n for n in ConsoleSettings.model_fields if n not in ServiceSettings.model_fields}
    names = {v for v in variables(ConsoleSettings) if any(v.endswith(n.upper()) for n in own)}
    missing = {v for v in names | {"OPS_CONSOLE_MAX_BODY_BYTES"} if f"`{v}`" not in GUIDE}
    assert len(names) == len(own) and not missing, f"docs/operations.md does not document {sorted(missing)}"
