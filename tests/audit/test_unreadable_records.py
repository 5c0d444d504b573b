"""A decision record that cannot be read: verify, the CLI audit, reads and exports fail
cleanly (tests/helpers/ledger.py)."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.helpers.ledger import Api, _jsonl, problem


@pytest.fixture
def hacked(tmp_path):
    """An SQLite service with three decisions whose seq 2 has an unparseable created_at
    (edited outside the service; PostgreSQL's typed columns cannot hold such a value)."""
    db = tmp_path / "hacked.db"
    a = Api(f"sqlite:///{db}")
    a.customer()
    a.ids = [a.decide(order_id=f"SO-{i}", amount="100.00").json()["decision_id"] for i in range(3)]
    with a.store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE decision_log SET created_at = '2026-11-29 21:18:15.314667 hacked' "
                "WHERE seq = 2"
            )
        )
    a.db = db
    yield a
    a.store.dispose()


def test_an_unreadable_record_breaks_verify_cleanly(hacked):
    result = hacked.store.audit.verify_chain()
    assert (result["ok"], result["checked"], result["first_broken_seq"]) == (False, 1, 2)
    assert result["reason"].startswith("the record cannot be read (ValueError: ")
    assert result["head_seq"] == 3
    body = hacked.client.get("/v1/audit/verify", headers=hacked.h("compliance"))
    assert body.status_code == 200, body.text
    assert body.json()["first_broken_seq"] == 2 and body.json()["ok"] is False


def test_an_unreadable_record_in_the_cli_audit(hacked, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{hacked.db}")
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    assert "BROKEN: decision log at seq 2: the record cannot be read (ValueError: " in r.stderr
    assert "Traceback" not in r.output


def test_an_unreadable_record_is_a_problem_on_reads(hacked):
    h = hacked.h("compliance")
    for url in ("/v1/decisions", f"/v1/decisions/{hacked.ids[1]}"):
        body = problem(hacked.client.get(url, headers=h), 500, "unreadable_record")
        assert "decision_log seq 2 cannot be read (ValueError: " in body["detail"]
    r = hacked.client.get(f"/v1/decisions/{hacked.ids[0]}", headers=h)
    assert r.status_code == 200  # the others still read
    r = hacked.client.get("/v1/decisions", params={"cursor": 2}, headers=h)
    assert [x["seq"] for x in r.json()["items"]] == [1]
    # the export: the unreadable record is in the first batch → a problem before any byte
    for fmt in ("jsonl", "csv"):
        body = problem(
            hacked.client.get(f"/v1/decisions/export?format={fmt}", headers=h),
            500,
            "unreadable_record",
        )
        assert "seq 2" in body["detail"]


def test_an_unreadable_record_mid_export_ends_it_as_incomplete(hacked, monkeypatch):
    """Past the first batch the status line is sent: the export ends with an explicit
    incomplete line and the connection is aborted (the server error propagates)."""
    from api.decisions.persistence import Decisions

    real = Decisions.iterate
    monkeypatch.setattr(Decisions, "iterate", lambda self, **kw: real(self, **kw, batch=1))
    h = hacked.h("compliance")
    strict = TestClient(hacked.app)  # raise_server_exceptions: the abort is visible
    for fmt in ("jsonl", "csv"):
        with pytest.raises(Exception, match="seq 2 cannot be read"):
            strict.get(f"/v1/decisions/export?format={fmt}", headers=h)
    lines = _jsonl(hacked.client.get("/v1/decisions/export?format=jsonl", headers=h))
    assert [x.get("seq") for x in lines[:-1]] == [1]
    assert lines[-1]["complete"] is False and lines[-1]["records"] == 1
    assert "decision_log seq 2 cannot be read (ValueError: " in lines[-1]["error"]
    text = hacked.client.get("/v1/decisions/export?format=csv", headers=h).text
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows] == ["seq", "1", "#incomplete"]
    assert rows[-1][1] == "1" and "seq 2 cannot be read" in rows[-1][2]


def test_a_real_server_aborts_an_export_that_fails_mid_stream(hacked, monkeypatch):
    """Over a real connection (uvicorn): the client gets the incomplete line and then a
    broken transfer (no final chunk), never what looks like a complete answer."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from api.decisions.persistence import Decisions

    real = Decisions.iterate
    monkeypatch.setattr(Decisions, "iterate", lambda self, **kw: real(self, **kw, batch=1))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(hacked.app, host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        for fmt, last in (("jsonl", b'"complete": false'), ("csv", b"#incomplete,1,")):
            body = b""
            with pytest.raises(httpx.RemoteProtocolError):
                with httpx.stream(
                    "GET",
                    f"http://127.0.0.1:{port}/v1/decisions/export?format={fmt}",
                    headers=hacked.h("compliance"),
                    timeout=10,
                ) as r:
                    assert r.status_code == 200
                    for chunk in r.iter_bytes():
                        body += chunk
            assert last in body.splitlines()[-1]
    finally:
        server.should_exit = True
        thread.join(10)
