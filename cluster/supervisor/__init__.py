"""Runs in the supervisor process: the command loop, its children, the control API, health checks, sd_notify."""
