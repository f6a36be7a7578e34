"""The scan feature."""
