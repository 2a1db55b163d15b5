"""Admission: permits counted per input item, taken at once or refused with 429 (never a wait).

Only the event loop thread takes and returns permits, so a plain counter is enough.
"""

from __future__ import annotations

import math

from fastembed_rt.server.metrics import Metrics
from fastembed_rt.server.requests import RequestError

__all__ = ["Admission"]


class Admission:
    """At most ``capacity`` input items admitted (queued or running) across all requests and models."""

    def __init__(self, capacity: int, metrics: Metrics) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._metrics = metrics

    def acquire(self, items: int, items_per_second: float) -> None:
        """Take ``items`` permits, or raise the 429 whose ``Retry-After`` estimates when they free up.

        ``items_per_second``: the serving model's recent throughput (0 when unknown).
        """
        if self.in_use + items > self.capacity:
            self._metrics.rejected_requests.inc()
            wait = max(1, math.ceil(self.in_use / items_per_second)) if items_per_second > 0 else 1
            raise RequestError(
                429,
                f"the server is at its limit of {self.capacity} inputs in flight ({self.in_use} in use, this request "
                f"has {items}); retry after {wait} s",
                "Overloaded",
                retry_after=wait,
            )
        self.in_use += items
        self._metrics.inputs_in_flight.set(self.in_use)

    def release(self, items: int) -> None:
        self.in_use -= items
        self._metrics.inputs_in_flight.set(self.in_use)
