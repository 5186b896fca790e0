"""Shared fixture: record which NVTX ranges the wrappers open and close, without a profiler attached."""
from __future__ import annotations

import pytest

import nsys_doctor.instrument as instrument


class RangeLog:
    """Stands in for the cached nvtx.annotate objects: logs ('push', name) / ('pop', name) in order."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def marker(self, name, domain=None):
        log = self

        class Marker:
            def __enter__(self):
                log.events.append(("push", name))
                return self

            def __exit__(self, *exc):
                log.events.append(("pop", name))
                return False
        return Marker()


@pytest.fixture
def range_log(monkeypatch):
    log = RangeLog()
    monkeypatch.setattr(instrument, "_range", log.marker)
    return log
