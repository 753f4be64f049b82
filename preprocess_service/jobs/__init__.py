"""Asynchronous jobs."""
