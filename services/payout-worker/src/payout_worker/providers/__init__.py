"""Payment-provider adapters behind one interface (base.PaymentProvider)."""

from __future__ import annotations

from aftersales_shared.clock import Clock

from ..config import Settings
from .base import Outcome, PaymentProvider, Transfer, TransferResult

__all__ = ["Outcome", "PaymentProvider", "Transfer", "TransferResult", "make_provider"]


def make_provider(settings: Settings, clock: Clock) -> PaymentProvider:
    if settings.provider == "alipay":
        from .alipay import AlipayProvider

        assert settings.alipay_app_id and settings.alipay_private_key  # checked by Settings
        return AlipayProvider(
            gateway=settings.alipay_gateway,
            app_id=settings.alipay_app_id,
            private_key_pem=settings.alipay_private_key.get_secret_value(),
            alipay_public_key_pem=settings.alipay_public_key,
            clock=clock,
            timeout=settings.provider_timeout_seconds,
            qps=settings.provider_qps,
            order_title=settings.alipay_order_title,
        )
    from .simulator import SimulatorProvider

    return SimulatorProvider(
        settings.simulator_url, timeout=settings.provider_timeout_seconds, qps=settings.provider_qps
    )
