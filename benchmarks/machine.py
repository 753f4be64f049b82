"""The machine a benchmark ran on (the service's own description, which ``/readyz`` shows too)."""

from preprocess_service.machine import WATCHED_FLAGS, machine_facts

__all__ = ["WATCHED_FLAGS", "machine_facts"]
