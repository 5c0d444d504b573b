"""Prometheus metrics of the service.

Label values are bounded: ``method`` is one of ``METHODS`` or ``other`` (any other method a
client invents, ``method_label``), ``route`` the matched route's template
(``/v1/customers/{customer_id}``) or ``unmatched``, never the raw path; so no request can
add series of its own choosing."""

from __future__ import annotations

#: the HTTP methods that get a ``method`` label of their own; any other is ``other``
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """``method`` if it is one of ``METHODS``, else ``other``."""
    return method if method in METHODS else "other"


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can coexist)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
