"""Runs in the supervisor: metrics aggregation, the six monitored metrics, alerts and their channels."""
