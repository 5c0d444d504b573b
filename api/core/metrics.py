"""Prometheus metrics of the service (``GET /metrics``).

Label values are bounded: ``method`` is one of ``METHODS`` or ``other`` (any other method a
client invents, ``method_label``), ``route`` the matched route's template
(``/v1/customers/{customer_id}``) or ``unmatched``, never the raw path; so no request can
add series of its own choosing.

Several workers (``creditgate serve --workers N``) share one ``/metrics``: the serve command
sets ``PROMETHEUS_MULTIPROC_DIR`` (an emptied directory) before the workers start, each
worker's counters and histograms go to files there (prometheus-client's multiprocess mode)
and whichever worker answers a scrape adds them all up. Multiprocess mode has no process
collector, so each worker publishes its own CPU time and resident memory as gauges labelled
by ``pid`` (``creditgate_worker_cpu_seconds``, ``creditgate_worker_resident_memory_bytes``),
refreshed every second by a thread of the worker; with one worker they are read at each
scrape.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

__all__ = ["METHODS", "MULTIPROC_ENV", "Metrics", "method_label", "worker_usage"]

#: the HTTP methods that get a ``method`` label of their own; any other is ``other``
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the environment variable of prometheus-client's multiprocess mode
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def method_label(method: str) -> str:
    """``method`` if it is one of ``METHODS``, else ``other``."""
    return method if method in METHODS else "other"


def worker_usage() -> tuple[float, int]:
    """This process's CPU time (user + system, seconds) and resident memory (bytes)."""
    cpu = time.process_time()
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak, which is what is known
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return cpu, rss


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can coexist in one
    process; in multiprocess mode the registry of ``render`` collects every worker's
    files)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "creditgate_decisions",
            "Decisions answered, by outcome and kind (new, repeat, amended)",
            ["outcome", "kind"],
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "creditgate_decision_seconds",
            "Time to decide and record one order (engine + database)",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.request_seconds = Histogram(
            "creditgate_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "creditgate_http_errors",
            "HTTP responses with status 4xx/5xx, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.policy = Gauge(
            "creditgate_policy_info",
            "The policy in force (value 1)",
            ["policy_id", "version", "sha256"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.decision_batch = Histogram(
            "creditgate_decision_batch_size",
            "Decisions recorded per transaction and commit (group commit)",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.decision_batch_seconds = Histogram(
            "creditgate_decision_batch_seconds",
            "Time of one decide-and-record transaction, commit included",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.worker_cpu = Gauge(
            "creditgate_worker_cpu_seconds",
            "CPU time (user + system) used by the worker process, by pid",
            ["pid"],
            registry=self.registry,
            multiprocess_mode="all",
        )
        self.worker_memory = Gauge(
            "creditgate_worker_resident_memory_bytes",
            "Resident memory of the worker process, by pid",
            ["pid"],
            registry=self.registry,
            multiprocess_mode="all",
        )
        self._pid = str(os.getpid())
        if self.multiprocess:
            self._sample()
            threading.Thread(
                target=self._sample_every_second, name="creditgate-worker-gauges", daemon=True
            ).start()

    def observe_batch(self, size: int, seconds: float) -> None:
        """One group-commit batch: its size and duration."""
        self.decision_batch.observe(size)
        self.decision_batch_seconds.observe(seconds)

    def _sample(self) -> None:
        cpu, rss = worker_usage()
        self.worker_cpu.labels(self._pid).set(cpu)
        self.worker_memory.labels(self._pid).set(rss)

    def _sample_every_second(self) -> None:
        while True:
            time.sleep(1.0)
            self._sample()

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every worker's metrics, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if not self.multiprocess:
            self._sample()
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        registry: Any = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
