"""Prometheus metrics of the server, in a registry of its own (``GET /metrics``).

=========================================== ========= =================================================
name                                        type      what
=========================================== ========= =================================================
fastembed_rt_requests_total                 counter   requests by route (`unmatched`: no route), status and model
fastembed_rt_request_duration_seconds       histogram whole request, by route, status and model
fastembed_rt_queue_duration_seconds         histogram a job's wait for its model's worker (one per job run)
fastembed_rt_tokenization_duration_seconds  histogram tokenizing one group (the jobs of a run with equal options)
fastembed_rt_inference_duration_seconds     histogram one model call (its graph batches)
fastembed_rt_batch_inputs                   histogram inputs per model call (across requests)
fastembed_rt_batch_tokens                   histogram tokens (after truncation) per model call
fastembed_rt_queue_inputs                   gauge     inputs waiting for a model's worker
fastembed_rt_inputs_in_flight               gauge     admitted inputs (the permits in use)
fastembed_rt_truncated_inputs_total         counter   inputs cut at max_seq_length
fastembed_rt_dropped_inputs_total           counter   inputs dropped because their client went away
fastembed_rt_rejected_requests_total        counter   429s: requests refused for want of permits
fastembed_rt_model_info                     gauge     1 per served model: its task, provider and variant
process_*, python_*                         various   the process's memory, CPU, open files, start time; GC
=========================================== ========= =================================================

``model`` is a served model's name ("" for routes that answer without one: /health, /metrics, errors before a
model was chosen); every label takes a bounded set of values. The per-model series exist from the model's load (0
until its first request), so an idle server's dashboards and ``absent()`` alerts see them.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["Metrics"]

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class Metrics:
    """The server's metrics; every update is thread-safe (the workers count from their own threads)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # the default registry's own
            r.register(collector)
        self.requests = Counter(
            "fastembed_rt_requests",
            "Requests by route, HTTP status and the served model that answered ('' before one was chosen)",
            ["route", "status", "model"],
            registry=r,
        )
        self.request_duration = Histogram(
            "fastembed_rt_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by route, HTTP status and model (filter status for "
            "latency objectives: 400s and 429s answer at once)",
            ["route", "status", "model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.model_info = Gauge(
            "fastembed_rt_model_info", "A served model: 1", ["model", "task", "provider", "variant"], registry=r
        )
        self.queue_duration = Histogram(
            "fastembed_rt_queue_duration_seconds",
            "Seconds a job (a request, a /vertex instance, a part of a mixed request) waited for its model's worker "
            "(one observation per job run)",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.tokenization_duration = Histogram(
            "fastembed_rt_tokenization_duration_seconds",
            "Seconds tokenizing one group's inputs: the requests of a worker run asking for the same options",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "fastembed_rt_inference_duration_seconds",
            "Seconds of one model call: its graph batches, over several requests' inputs",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_inputs = Histogram(
            "fastembed_rt_batch_inputs",
            "Inputs per model call, across requests",
            ["model"],
            buckets=_COUNTS,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "fastembed_rt_batch_tokens",
            "Tokens (after truncation) per model call, across requests",
            ["model"],
            buckets=_TOKENS,
            registry=r,
        )
        self.queue_inputs = Gauge(
            "fastembed_rt_queue_inputs", "Inputs waiting for their model's worker now", ["model"], registry=r
        )
        self.inputs_in_flight = Gauge(
            "fastembed_rt_inputs_in_flight",
            "Admitted inputs, queued or running (--max-concurrent-requests)",
            registry=r,
        )
        self.truncated_inputs = Counter(
            "fastembed_rt_truncated_inputs", "Inputs cut at the model's max_seq_length", ["model"], registry=r
        )
        self.dropped_inputs = Counter(
            "fastembed_rt_dropped_inputs",
            "Inputs dropped before they ran because their client went away (499)",
            ["model"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "fastembed_rt_rejected_requests", "Requests refused with 429 for want of permits", registry=r
        )

    def add_model(self, name: str, task: str, provider: str, variant: str) -> None:
        """Start a served model's series at 0, and its info gauge at 1."""
        for metric in (
            self.queue_duration,
            self.tokenization_duration,
            self.inference_duration,
            self.batch_inputs,
            self.batch_tokens,
            self.queue_inputs,
            self.truncated_inputs,
            self.dropped_inputs,
        ):
            metric.labels(name)
        self.model_info.labels(name, task, provider, variant).set(1)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
