"""The Standard Webhooks scheme as the spec's libraries test it, verified by the official `standardwebhooks`
package; and the retry schedule the issue asks for."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from case_api.webhooks import schedule, signing
from standardwebhooks.webhooks import WebhookVerificationError
from webhook_testing import verify

# From standard-webhooks/standard-webhooks: the vector every library's tests sign (Go: TestWebhookSign)
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


class TestSpecVector:
    def test_the_spec_libraries_signature(self) -> None:
        assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE

    def test_the_official_verifier_accepts_our_headers(self) -> None:
        headers = signing.headers([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD)
        assert headers["webhook-signature"] == SPEC_SIGNATURE
        assert verify(SPEC_SECRET, headers, SPEC_PAYLOAD) == {"test": 2432232314}

    def test_a_changed_body_or_id_or_stale_timestamp_fails(self) -> None:
        headers = signing.headers([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD)
        with pytest.raises(WebhookVerificationError):
            verify(SPEC_SECRET, headers, b'{"test": 2432232315}')
        with pytest.raises(WebhookVerificationError):
            verify(SPEC_SECRET, {**headers, "webhook-id": "msg_other"}, SPEC_PAYLOAD)
        sent_at = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
        with pytest.raises(WebhookVerificationError, match="too old"):
            verify(SPEC_SECRET, headers, SPEC_PAYLOAD, at=sent_at + timedelta(minutes=6))


class TestSecrets:
    def test_a_new_secret_is_whsec_and_24_to_64_random_bytes(self) -> None:
        secret = signing.new_secret()
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
        assert secret != signing.new_secret()

    def test_during_a_rotation_both_secrets_sign_and_either_verifies(self) -> None:
        new, old = signing.new_secret(), signing.new_secret()
        headers = signing.headers([new, old], "msg_1", SPEC_TIMESTAMP, b"{}")
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert verify(new, headers, b"{}") == {} and verify(old, headers, b"{}") == {}
        with pytest.raises(WebhookVerificationError):
            verify(signing.new_secret(), headers, b"{}")


class TestRetrySchedule:
    def test_the_first_retry_comes_within_ten_seconds(self) -> None:
        first = schedule.retry_delay(1)
        assert first is not None and first <= timedelta(seconds=10)

    def test_retries_back_off_exponentially_for_at_least_a_day_then_stop(self) -> None:
        delays = []
        attempt = 1
        while (delay := schedule.retry_delay(attempt)) is not None:
            delays.append(delay)
            attempt += 1
        assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
        assert delays[1] == delays[0] * schedule.FACTOR
        assert sum(delays, timedelta()) >= timedelta(hours=24)
        assert sum(delays[:-1], timedelta()) < timedelta(hours=24) + schedule.LONGEST_WAIT
