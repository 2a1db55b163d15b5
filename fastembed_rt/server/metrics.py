"""Prometheus metrics of the server, in a registry of its own (``GET /metrics``).

=========================================== ========= =================================================
name                                        type      what
=========================================== ========= =================================================
fastembed_rt_requests_total                 counter   requests by route (`unmatched`: no route) and status
fastembed_rt_request_duration_seconds       histogram whole request, by route
fastembed_rt_queue_duration_seconds         histogram a job's wait for its model's worker
fastembed_rt_tokenization_duration_seconds  histogram tokenizing the run a job was part of
fastembed_rt_inference_duration_seconds     histogram the graph run a job was part of
fastembed_rt_batch_inputs                   histogram inputs per worker run (across requests)
fastembed_rt_batch_tokens                   histogram tokens (after truncation) per worker run
fastembed_rt_queue_inputs                   gauge     inputs waiting for a model's worker
fastembed_rt_inputs_in_flight               gauge     admitted inputs (the permits in use)
fastembed_rt_truncated_inputs_total         counter   inputs cut at max_seq_length
fastembed_rt_dropped_inputs_total           counter   inputs dropped because their client went away
fastembed_rt_rejected_requests_total        counter   429s: requests refused for want of permits
=========================================== ========= =================================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class Metrics:
    """The server's metrics; every update is thread-safe (the workers count from their own threads)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fastembed_rt_requests", "Requests by route and status", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "fastembed_rt_request_duration_seconds", "Whole request", ["route"], buckets=_SECONDS, registry=r
        )
        self.queue_duration = Histogram(
            "fastembed_rt_queue_duration_seconds", "Wait for the worker", ["model"], buckets=_SECONDS, registry=r
        )
        self.tokenization_duration = Histogram(
            "fastembed_rt_tokenization_duration_seconds", "Tokenizing a run", ["model"], buckets=_SECONDS, registry=r
        )
        self.inference_duration = Histogram(
            "fastembed_rt_inference_duration_seconds", "Graph run", ["model"], buckets=_SECONDS, registry=r
        )
        self.batch_inputs = Histogram(
            "fastembed_rt_batch_inputs", "Inputs per worker run", ["model"], buckets=_COUNTS, registry=r
        )
        self.batch_tokens = Histogram(
            "fastembed_rt_batch_tokens", "Tokens per worker run", ["model"], buckets=_TOKENS, registry=r
        )
        self.queue_inputs = Gauge("fastembed_rt_queue_inputs", "Inputs waiting", ["model"], registry=r)
        self.inputs_in_flight = Gauge("fastembed_rt_inputs_in_flight", "Admitted inputs", registry=r)
        self.truncated_inputs = Counter(
            "fastembed_rt_truncated_inputs", "Inputs cut at max_seq_length", ["model"], registry=r
        )
        self.dropped_inputs = Counter(
            "fastembed_rt_dropped_inputs", "Inputs dropped: client gone", ["model"], registry=r
        )
        self.rejected_requests = Counter("fastembed_rt_rejected_requests", "Requests refused with 429", registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
