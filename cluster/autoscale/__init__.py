"""Runs in the supervisor: sizes the HTTP tier on CPU. ``policy`` is pure; ``autoscaler`` is its loop."""
