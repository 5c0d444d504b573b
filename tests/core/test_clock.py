"""The service's clock (issue 7, part 0): one clock for everything the service decides and
records, a fixed or moved clock only outside production mode, and every record written
under a moved clock says so (in its hash too)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.core.clock import Clock, ClockSettingError
from api.core.settings import Settings
from api.store import Store
from engine.evaluate import evaluate, load
from tests.pgserver import POLICY, ROOT, LiveServer

ROLES = ("admin", "order_entry", "compliance")
AT = datetime(2031, 2, 28, 23, 59, 30, 123456, tzinfo=UTC)
PRIME = {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}


@pytest.mark.parametrize(
    ("setting", "note", "offset"),
    [
        ("+365d", "offset +365d", timedelta(days=365)),
        ("-2h", "offset -2h", timedelta(hours=-2)),
        ("+1w1d12h30m5s", "offset +8d12h30m5s", timedelta(days=8, hours=12, minutes=30, seconds=5)),
    ],
)
def test_an_offset_clock_moves_the_system_clock(setting, note, offset) -> None:
    clock = Clock.from_setting(setting)
    assert clock.note == note
    assert abs(clock.now() - datetime.now(UTC) - offset) < timedelta(seconds=5)


def test_fixed_and_started_clocks() -> None:
    fixed = Clock.from_setting("2031-02-28T23:59:30.123456Z")
    assert fixed.now() == AT and fixed.today() == date(2031, 2, 28)
    assert fixed.note == "fixed 2031-02-28T23:59:30.123456+00:00"
    assert Clock.from_setting("2031-03-01T00:59:30.123456+01:00").now() == AT
    assert Clock.from_setting("2031-02-28").now() == datetime(2031, 2, 28, tzinfo=UTC)
    started = Clock.from_setting("start=2031-02-28T23:59:30.123456Z")
    assert started.note == "started 2031-02-28T23:59:30.123456+00:00"
    assert timedelta(0) <= started.now() - AT < timedelta(seconds=5)  # it ticks from there
    assert Clock.from_setting(None).note is None and Clock.from_setting("").note is None
    assert Clock.of(lambda: datetime(2031, 1, 1)).now() == datetime(2031, 1, 1, tzinfo=UTC)
    assert Clock.of(lambda: AT).note == "injected"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("+1x", "is not a duration"),
        ("+", "is not a duration"),
        ("2031-02-30T00:00:00Z", "is not a date-time"),
        ("2031-02-28T10:00:00", "has no UTC offset"),
        ("tomorrow", "is not a date-time"),
    ],
)
def test_a_malformed_clock_is_refused(value, message) -> None:
    with pytest.raises(ClockSettingError, match=message):
        Clock.from_setting(value)


def test_production_mode_refuses_a_moved_clock() -> None:
    with pytest.raises(ValueError, match="refused in production mode"):
        Settings(clock="+1d")
    with pytest.raises(ValueError, match="refused in production mode"):
        Settings(mode="production", clock="2031-02-28T00:00:00Z")
    assert Settings(mode="test", clock="+1d").make_clock().note == "offset +1d"
    assert Settings(mode="development", clock=" ").make_clock().note is None
    assert Settings().make_clock().note is None


def test_the_serve_command_refuses_a_moved_clock_in_production(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "CREDITGATE_POLICY_PATH": str(POLICY),
        "CREDITGATE_CLOCK": "+365d",
    }
    r = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "CREDITGATE_CLOCK is refused in production mode" in r.stderr
    assert "Traceback" not in r.stderr


def test_records_written_under_a_moved_clock_say_so(tmp_path: Path) -> None:
    compiled = load(str(POLICY))
    store = Store(f"sqlite:///{tmp_path / 'c.db'}", clock=Clock.fixed(AT))
    try:
        store.upgrade()
        store.policies.save(compiled.policy)
        store.customers.put("C1", currency="EUR", credit_limit=Decimal("1000.00"), facts=PRIME)
        order = {
            "order_id": "O1",
            "customer_id": "C1",
            "amount": "10.00",
            "currency": "EUR",
            "payment_term_days": 30,
        }
        decision, _ = store.decisions.decide(
            order, lambda r: evaluate(compiled, r, clock=store.db.clock), "t"
        )
        assert decision.evaluated_at == AT
        store.ledger.apply_event(
            "C1",
            {"event_id": "E1", "type": "payment_received", "amount": Decimal("1.00"),
             "currency": "EUR"},
            "t",
        )  # fmt: skip
        record = store.decisions.get(decision.decision_id)
        assert record["clock"] == "fixed 2031-02-28T23:59:30.123456+00:00"
        assert record["created_at"] == AT
        assert store.customers.get("C1")["updated_at"] == AT
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT clock FROM ledger_events")).scalar() == (
                "fixed 2031-02-28T23:59:30.123456+00:00"
            )
            assert conn.execute(sa.text("SELECT created_at FROM api_keys")).all() == []
        report = store.audit.verify_chain()
        assert report["ok"] is True
        # the audit names them: test data in a database about to be used for real shows
        assert (report["moved_clock"], report["ledger"]["moved_clock"]) == (1, 1)
        verify = subprocess.run(
            [sys.executable, "-m", "api.cli", "audit", "verify"],
            env={**os.environ, "CREDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"},
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stderr
        assert (
            "NOTE: decision log: 1 record written under a moved clock (CREDITGATE_CLOCK, "
            "test or development mode): test data, not real decisions"
        ) in verify.stderr
        # the note is hashed: removing it breaks both chains
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE decision_log SET clock = NULL"))
            conn.execute(sa.text("UPDATE ledger_events SET clock = NULL"))
        result = store.audit.verify_chain()
        assert (result["first_broken_seq"], result["ledger"]["first_broken_seq"]) == (1, 1)
    finally:
        store.dispose()


def test_a_server_in_test_mode_runs_on_the_clock_it_is_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = {"CREDITGATE_MODE": "test", "CREDITGATE_CLOCK": "2031-02-28T23:59:30.123456Z"}
    keys = {}
    for args in (("db", "upgrade"), *(("keys", "create", "--role", role) for role in ROLES)):
        r = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        if args[0] == "keys":
            keys[args[-1]] = {"Authorization": f"Bearer {r.stdout.strip()}"}
    server = LiveServer(url, tmp_path, env=env)
    try:
        with httpx.Client(base_url=server.base, timeout=30) as c:
            c.put(
                "/v1/customers/C1",
                headers={**keys["admin"], "If-None-Match": "*"},
                json={"currency": "EUR", "credit_limit": "1000.00", "facts": PRIME},
            ).raise_for_status()
            body = {
                "order_id": "O1",
                "customer_id": "C1",
                "amount": "10.00",
                "currency": "EUR",
                "payment_term_days": 30,
            }
            answer = c.post("/v1/decisions", headers=keys["order_entry"], json=body).json()
            assert answer["evaluated_at"] == "2031-02-28T23:59:30.123456Z"
            # "today" is the clock's: an order dated the day after is in the future
            late = c.post(
                "/v1/decisions",
                headers=keys["order_entry"],
                json={**body, "order_id": "O2", "order_date": "2031-03-01"},
            )
            assert late.status_code == 422 and "after today (2031-02-28" in late.text
            record = c.get(f"/v1/decisions/{answer['decision_id']}", headers=keys["compliance"])
            assert record.json()["clock"] == "fixed 2031-02-28T23:59:30.123456+00:00"
            assert record.json()["created_at"] == "2031-02-28T23:59:30.123456+00:00"
    finally:
        server.stop()
