"""Redis priority queues (see issue 4)."""
