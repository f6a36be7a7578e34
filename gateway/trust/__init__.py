"""The trust feature."""
