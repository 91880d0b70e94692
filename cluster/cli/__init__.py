"""The `cluster` command line: ``main`` holds the group and its commands; run it with ``python -m cluster.cli``."""
