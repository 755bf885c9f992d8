"""Typed clients of the internal services."""
