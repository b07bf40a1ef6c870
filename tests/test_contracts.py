"""The event-contract registry (aftersales_shared.contracts) against the code: every type a service consumes
is registered and produced, every type produced is read (by a service or by a reader the registry names),
and no service spells an event type itself."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from aftersales_shared import contracts, topics
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import SystemClock
from aftersales_shared.contracts import Contract
from aftersales_shared.events import CaseEvent
from case_api.config import Settings as CaseSettings
from case_api.consumers import reactions
from logistics_watcher.config import Settings as WatcherSettings
from logistics_watcher.consumers import event_handlers
from payout_worker.config import Settings as PayoutSettings
from payout_worker.handlers import ResultQueue, make_handlers
from payout_worker.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "case-api": ROOT / "services/case-api/src/case_api",
    "logistics-watcher": ROOT / "services/logistics-watcher/src/logistics_watcher",
    "payout-worker": ROOT / "services/payout-worker/src/payout_worker",
}
# Families a producer picks a member of at run time, by how the producer names the family
FAMILIES = {
    "case_event": contracts.CASE_EVENTS,
    "ALERT_EVENTS": contracts.ALERT_EVENTS,
    "PARCEL_EVENTS": contracts.PARCEL_EVENTS,
    "PAYOUT_EVENTS": contracts.PAYOUT_EVENTS,
}
EVENT_TYPE = re.compile(r"^(aftersales|logistics|payouts)\.[a-z_]+\.[a-z_]+\.v\d+$")


def consumed() -> dict[str, set[str]]:
    """The event types each service's consumer group has a handler for."""
    payout = PayoutSettings()
    payout_maps = make_handlers(
        SystemClock(),
        BusinessCalendar(payout.extra_holidays),
        payout.cutoff,
        str,
        Limits.of(payout),
        payout.approval_verifier(),
        ResultQueue(payout.result_signer(), SystemClock()),
    )
    return {
        "case-api": set(reactions(CaseSettings().result_verifier())),
        "logistics-watcher": {t for m in event_handlers(WatcherSettings(), SystemClock()) for t in m},
        "payout-worker": {t for m in payout_maps for t in m},
    }


class Source:
    """What a service's code names: the registry's entries, and its string literals."""

    def __init__(self, root: Path) -> None:
        self.names: set[str] = set()
        self.literals: set[str] = set()
        self.spelled_types: list[str] = []
        for path in root.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            examples = {  # documentation (an OpenAPI example) may spell a type
                id(n)
                for k in ast.walk(tree)
                if isinstance(k, ast.keyword) and k.arg in ("example", "examples")
                for n in ast.walk(k.value)
            }
            for node in ast.walk(tree):
                if id(node) in examples:
                    continue
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if node.value.id == "contracts":
                        self.names.add(node.attr)
                elif isinstance(node, ast.ImportFrom) and node.module == "aftersales_shared.contracts":
                    self.names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.literals.add(node.value)
                    if EVENT_TYPE.match(node.value):
                        self.spelled_types.append(f"{path.name}: {node.value}")
                elif isinstance(node, ast.JoinedStr) and re.search(r"\.v\d+$", _text(node)):
                    self.spelled_types.append(f"{path.name}: f-string {_text(node)}")

    def produces(self, contract: Contract) -> bool:
        """Does this code queue the contract: by its name, or by its family and its name in the family?"""
        if any(value is contract for name, value in vars(contracts).items() if name in self.names):
            return True
        return any(
            family in self.names
            and contract in members.values()
            and _member(members, contract) in self.literals
            for family, members in FAMILIES.items()
        )


def _text(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def _member(members: dict[str, Contract], contract: Contract) -> str:
    return next(name for name, value in members.items() if value is contract)


@cache
def source(service: str) -> Source:
    return Source(SOURCES[service])


def produced_here(contract: Contract) -> bool:
    return contract.producer in SOURCES and source(contract.producer).produces(contract)


def test_every_consumed_type_is_registered_on_a_topic_its_service_reads() -> None:
    for service, types in consumed().items():
        unregistered = sorted(t for t in types if contracts.by_type(t) is None)
        assert not unregistered, (
            f"{service} consumes types not in aftersales_shared.contracts: {unregistered}"
        )
        elsewhere = sorted(t for t in types if contracts.REGISTRY[t].topic not in topics.CONSUMED_BY[service])
        assert not elsewhere, f"{service} handles types on topics it does not read: {elsewhere}"


def test_every_consumed_type_is_produced() -> None:
    for service, types in consumed().items():
        orphans = sorted(
            t
            for t in types
            if contracts.REGISTRY[t].producer != topics.WAREHOUSE and not produced_here(contracts.REGISTRY[t])
        )
        assert not orphans, f"{service} consumes types nobody produces: {orphans}"


def test_every_registered_type_of_ours_is_produced() -> None:
    ours = [c for c in contracts.REGISTRY.values() if c.producer in SOURCES]
    unproduced = sorted(c.type for c in ours if not produced_here(c))
    assert not unproduced, f"registered but never produced: {unproduced}"


def test_every_produced_type_is_read_by_a_service_or_a_named_outside_reader() -> None:
    read = set().union(*consumed().values())
    unread = sorted(c.type for c in contracts.REGISTRY.values() if c.type not in read and not c.readers)
    assert not unread, f"produced, but read by no service and no reader named in the registry: {unread}"


def test_no_service_spells_an_event_type_itself() -> None:
    spelled = [line for service in SOURCES for line in source(service).spelled_types]
    assert not spelled, f"name the entry of aftersales_shared.contracts instead: {spelled}"


class TestTheChecksCanFail:
    """The source checks above see a type that is registered but queued nowhere, and one spelled out."""

    def test_a_contract_named_nowhere_is_not_produced(self) -> None:
        stray = Contract("aftersales.case.teleported.v1", CaseEvent, topics.CASES, "order_id")
        assert not produced_here(stray)
        assert produced_here(contracts.CASHBACK_APPROVED) and produced_here(contracts.PAYOUT_FAILED)

    def test_literals_and_f_strings_are_caught(self, tmp_path: Path) -> None:
        (tmp_path / "producer.py").write_text(
            'A = "aftersales.case.approved.v1"\nB = f"payouts.payout.{status}.v1"\nC = "aftersales"\n'
            'D = Field(examples=["aftersales.case.approved.v1"])\n'
        )
        assert len(Source(tmp_path).spelled_types) == 2


@pytest.mark.parametrize("contract", list(contracts.REGISTRY.values()), ids=lambda c: c.type)
def test_each_contract_keys_by_a_field_of_its_payload(contract: Contract) -> None:
    assert contract.key in contract.payload.model_fields
    assert contract.type.endswith(".v1") and contract.topic in topics.ALL
