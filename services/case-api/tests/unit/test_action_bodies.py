"""Each case action has its own request body, and each body carries what its command needs."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest
from case_api.domain.commands import COMMANDS
from case_api.domain.workflow import Action
from case_api.schemas import ACTION_BODIES

# What the service works out itself and no caller sends (domain/commands.py, handlers' _prepare).
PREPARED = {"attached", "evidence_missing", "sla_due_at", "reship_order_id", "lines"}


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_its_own_body(action: Action) -> None:
    assert action in ACTION_BODIES, f"add {action}'s body to schemas.ACTION_BODIES"


@pytest.mark.parametrize("action", list(ACTION_BODIES))
def test_a_body_requires_what_its_command_requires(action: Action) -> None:
    body = ACTION_BODIES[action].model_fields
    for spec in fields(COMMANDS[action]):
        if spec.name in PREPARED:
            continue
        assert spec.name in body, f"{action}: the command's {spec.name} cannot be sent"
        required = spec.default is MISSING and spec.default_factory is MISSING
        assert body[spec.name].is_required() == required, f"{action}.{spec.name}"
