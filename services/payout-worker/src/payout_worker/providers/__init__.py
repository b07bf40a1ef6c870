"""Payment-provider adapters behind one interface (base.PaymentProvider)."""

from __future__ import annotations

from aftersales_shared.clock import Clock

from ..config import Settings
from .base import Outcome, PaymentProvider, Transfer, TransferResult

__all__ = ["Outcome", "PaymentProvider", "Transfer", "TransferResult", "make_provider"]


def make_provider(settings: Settings, clock: Clock) -> PaymentProvider:
    if settings.provider == "alipay":
        from .alipay import AlipayProvider
        from .alipay_certs import read_setting

        assert settings.alipay_app_id and settings.alipay_private_key  # checked by Settings
        certificates = None
        if settings.alipay_certificate_mode:  # all three set: checked by Settings
            assert settings.alipay_app_cert and settings.alipay_public_cert and settings.alipay_root_cert
            certificates = (
                read_setting(settings.alipay_app_cert),
                read_setting(settings.alipay_public_cert),
                read_setting(settings.alipay_root_cert),
            )
        return AlipayProvider(
            gateway=settings.alipay_gateway,
            app_id=settings.alipay_app_id,
            private_key_pem=settings.alipay_private_key.get_secret_value(),
            alipay_public_key_pem=settings.alipay_public_key,
            clock=clock,
            timeout=settings.provider_timeout_seconds,
            qps=settings.provider_qps,
            order_title=settings.alipay_order_title,
            certificates=certificates,
        )
    from .simulator import SimulatorProvider

    return SimulatorProvider(
        settings.simulator_url, timeout=settings.provider_timeout_seconds, qps=settings.provider_qps
    )
