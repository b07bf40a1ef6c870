"""Run by `make test` with pytest-xdist (`-n 2 --dist loadgroup`): every test that talks to the Kafka
broker joins one group, so those tests run one at a time on one worker while the others share the rest.
They start and kill brokers, consumers and whole stacks, and time-out under a second broker-heavy test."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("kafka"):
            item.add_marker(pytest.mark.xdist_group("kafka"))
