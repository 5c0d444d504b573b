"""A live ``creditgate serve`` on a new SQLite file with a key per role and seeded data: the
worked example's customer CUST-0004 and a few others, USD and JPY rates of today. For the
tests that drive the service over HTTP from outside (a generated client, schemathesis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.pgserver import LiveServer

ROLES = ("order_entry", "finance", "reviewer", "compliance", "policy_owner", "admin")

CUSTOMERS = {
    "CUST-0004": {
        "currency": "EUR",
        "credit_limit": "50000.00",
        "open_receivables": "45000.00",
        "facts": {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.5"},
    },
    "CUST-0001": {
        "currency": "EUR",
        "credit_limit": "250000.00",
        "open_receivables": "20000.00",
        "facts": {"risk_class": "low", "years_in_business": 30, "avg_days_late": "0.4"},
    },
    "CUST-0002": {
        "currency": "EUR",
        "credit_limit": "10000.00",
        "open_receivables": "0.00",
        "days_past_due": 95,
        "facts": {"risk_class": "high", "years_in_business": 1, "blacklisted": True},
    },
}


@dataclass
class Live:
    server: LiveServer
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.base

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


@contextmanager
def live_service(tmp: Path) -> Iterator[Live]:
    """A seeded live service in ``tmp`` (stopped afterwards)."""
    from api.store import Store

    url = f"sqlite:///{tmp / 'creditgate.db'}"
    store = Store(url)
    store.upgrade()
    keys = {role: store.keys.create(role, name=f"live {role}") for role in ROLES}
    store.dispose()
    server = LiveServer(url, tmp)
    try:
        live = Live(server, keys)
        today = datetime.now(UTC).date().isoformat()
        with httpx.Client(base_url=live.url, headers=live.headers(), timeout=30) as c:
            for cid, body in CUSTOMERS.items():
                r = c.put(f"/v1/customers/{cid}", json=body, headers={"If-None-Match": "*"})
                assert r.status_code == 200, r.text
            rates = [
                {"currency": "USD", "rate": "0.92", "as_of": today},
                {"currency": "JPY", "rate": "0.0061", "as_of": today},
            ]
            r = c.put("/v1/fx-rates", json={"base": "EUR", "rates": rates})
            assert r.status_code == 200, r.text
        yield live
    finally:
        server.stop()
