"""Prometheus metrics of one serving app, in a registry of its own (two apps in a process do not mix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Loopback HTTP plus a fast model answers in well under a millisecond; slow models take seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class ServingMetrics:
    """Request counts and latencies by model, version, endpoint and status; batch sizes; queue depth."""

    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopml_requests",
            "Requests answered, by model, version, endpoint and HTTP status",
            ["model", "version", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopml_request_duration_seconds",
            "Time from request to response, by model, version and endpoint",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Histogram(
            "loopml_batch_rows",
            "Rows per prediction call, by model and version",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=self.registry,
        )
        self.swaps = Counter(
            "loopml_model_swaps", "Version switches made while serving", ["model"], registry=self.registry
        )
        queue = Gauge("loopml_queue_depth", "Prediction calls waiting for a worker", registry=self.registry)
        queue.set_function(queue_depth)
        running = Gauge("loopml_in_flight", "Prediction calls running or waiting", registry=self.registry)
        running.set_function(in_flight)
        self.served = Gauge(
            "loopml_served_version",
            "1 for the version each model name serves now",
            ["model", "version", "runtime"],
            registry=self.registry,
        )

    def watch_log(self, log: Any) -> None:
        """Export the prediction log's drops and backlog (`log` None: logging is off, both stay 0)."""
        dropped = Gauge(
            "loopml_prediction_log_dropped_rows",
            "Prediction rows not logged since start (log queue full or write failed)",
            registry=self.registry,
        )
        dropped.set_function(lambda: log.dropped_rows if log is not None else 0)
        backlog = Gauge(
            "loopml_prediction_log_queue_depth",
            "Prediction batches waiting to be written",
            registry=self.registry,
        )
        backlog.set_function(lambda: log.queue_depth if log is not None else 0)

    def observe(self, model: str, version: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(model, version, endpoint, str(status)).inc()
        self.latency.labels(model, version, endpoint).observe(seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
