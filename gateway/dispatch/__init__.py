"""The dispatch feature."""
