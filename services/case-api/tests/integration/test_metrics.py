"""/metrics: cases by status, request latency, consumer lag, the outbox, all in Prometheus' format."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aftersales_shared.db import make_engine, session_factory
from aftersales_testing import Metrics, free_port
from case_api_testing import Api


async def settled(api: Api) -> Metrics:
    """A scrape once the relay has published everything and the consumer has seen its topics."""
    for _ in range(100):
        metrics = await api.metrics()
        if metrics.value("aftersales_outbox_backlog", service="case-api") == 0 and metrics.labels(
            "aftersales_consumer_lag", "topic", group="case-api"
        ):
            return metrics
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not drain")


class TestMetrics:
    async def test_cases_by_status(self, api: Api) -> None:
        await api.put_order()
        first = (await api.open_case()).json()
        await api.open_case(lines=[{"line_id": "L2", "quantity": 1}])
        await api.act(first, "withdraw", "storefront")
        metrics = await settled(api)
        assert metrics.value("aftersales_cases_by_status", status="retention") == 1
        assert metrics.value("aftersales_cases_by_status", status="withdrawn") == 1
        assert metrics.value("aftersales_cases_by_status", status="refunded") == 0

    async def test_request_latency_by_route_and_status(self, api: Api) -> None:
        created = {"route": "/v1/cases", "method": "POST", "status": "201"}
        missing = {"route": "/v1/cases/{case_id}", "status": "404"}
        before = await api.metrics()
        await api.put_order()
        await api.open_case()
        await api.call("GET", "/v1/cases/case_missing", "support")
        after = await api.metrics()

        def more(name: str, **labels: str) -> float:
            return after.total(name, **labels) - before.total(name, **labels)

        assert more("aftersales_http_request_duration_seconds_count", **created) == 1
        assert more("aftersales_http_request_duration_seconds_bucket", **created, le="+Inf") == 1
        assert more("aftersales_http_request_duration_seconds_bucket", **created, le="5.0") == 1
        assert more("aftersales_http_request_duration_seconds_count", **missing) == 1

    async def test_consumer_lag_per_group_topic_and_partition(self, api: Api) -> None:
        expected = {
            "logistics.alerts.v1",
            "logistics.parcels.v1",
            "payouts.results.v1",
            "aftersales.cases.v1",  # its own topics: fanned out to webhooks (a second runner of the group)
            "aftersales.cashback.v1",
        }
        metrics = await settled(api)
        for _ in range(100):
            if metrics.labels("aftersales_consumer_lag", "topic", group="case-api") == expected:
                break
            await asyncio.sleep(0.05)
            metrics = await api.metrics()
        assert metrics.labels("aftersales_consumer_lag", "topic", group="case-api") == expected
        assert (
            metrics.value(
                "aftersales_consumer_lag", group="case-api", topic="payouts.results.v1", partition="0"
            )
            == 0
        )
        for runner in api.app.state.consumers:
            await runner.stop()
        assert not (await api.metrics()).labels(
            "aftersales_consumer_lag", "topic", group="case-api"
        )  # no stale series

    async def test_while_the_database_does_not_answer_its_counts_are_left_out(self, api: Api) -> None:
        await api.put_order()
        assert (await api.metrics()).labels("aftersales_cases_by_status", "status")
        working = api.app.state.sessions
        api.app.state.sessions = session_factory(
            make_engine(f"postgresql+asyncpg://u:p@127.0.0.1:{free_port()}/x")
        )
        try:
            down = await api.metrics()  # still served: request latency, consumer lag
        finally:
            api.app.state.sessions = working
        assert not down.labels("aftersales_cases_by_status", "status") and not down.labels(
            "aftersales_outbox_backlog", "service"
        )
        assert (
            down.total("aftersales_http_request_duration_seconds_count", route="/v1/orders/{order_id}") >= 1
        )
        assert (await api.metrics()).value("aftersales_cases_by_status", status="retention") == 0  # back


class TestCalendarCoverage:
    async def test_days_ahead_without_holiday_data(self, api: Api) -> None:
        # 2026-11-05 (the test clock): the next 60 days run to 2027-01-03, three days chinese-calendar lacks
        assert (await api.metrics()).value(
            "aftersales_business_calendar_uncovered_days", service="case-api"
        ) == 3
        api.clock.set(datetime.fromisoformat("2026-11-02T12:00:00+08:00"))  # up to 2026-12-31: covered
        assert (await api.metrics()).value(
            "aftersales_business_calendar_uncovered_days", service="case-api"
        ) == 0
