"""Streaming alerting: rules, lifecycle, routing and notification channels."""
