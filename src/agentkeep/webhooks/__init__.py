"""Signed webhooks: an organization's endpoints, the outbox of events, delivery and its log."""
