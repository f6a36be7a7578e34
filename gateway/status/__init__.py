"""The status feature."""
