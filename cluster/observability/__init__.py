"""Helpers every process shares: JSON logging and the request correlation id."""
