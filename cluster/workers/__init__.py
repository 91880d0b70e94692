"""What runs inside a forked HTTP worker."""
