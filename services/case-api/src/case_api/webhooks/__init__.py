"""Signed webhooks (Standard Webhooks): per-shop subscriptions, deliveries fanned out from the events case-api
publishes and consumes, sent at least once with a stable `webhook-id` by a dispatcher that claims due rows."""
