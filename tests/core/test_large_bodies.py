"""Issue 8, part 6: large bodies are received one at a time per worker (the large-body
gate of ``api.core.bodies.read_body``), so callers sending megabytes queue among
themselves while the usual small requests go by; a body that trickles in while holding
the gate is cut off with 408. In-process ASGI (httpx), one event loop, real SQLite."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from api.core import bodies
from tests.helpers.ledger import Api, problem


class Trickle:
    """A request body sent in two parts: 100 KB, then the rest when ``go`` is set."""

    def __init__(self, body: bytes):
        self.body, self.go = body, asyncio.Event()

    async def __aiter__(self):
        yield self.body[:100_000]
        await self.go.wait()
        yield self.body[100_000:]


def junk(order_id: str) -> bytes:
    return json.dumps({"order_id": order_id, "customer_id": "CUST-1", "amount": "1.00",
                       "currency": "EUR", "payment_term_days": 30,
                       "facts": {"customer.country_risk": "x" * 300_000}}).encode()


async def _gate_taken() -> None:
    """Until this loop's large-body gate is held (no fixed sleep: a busy machine is slow)."""
    for _ in range(3000):
        gate = bodies._gates.get(asyncio.get_running_loop())
        if gate is not None and gate.locked():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first large body never took the gate")


@pytest.fixture
def api(tmp_path):
    a = Api(f"sqlite:///{tmp_path / 'creditgate.db'}")
    a.customer("CUST-1")
    yield a
    a.store.dispose()


def test_a_large_body_waits_for_the_one_being_received_and_small_orders_go_by(api):
    async def scenario():
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cg") as client:
            h = {**api.h("order_entry"), "content-type": "application/json"}
            first, second = Trickle(junk("J-1")), Trickle(junk("J-2"))
            length = {"content-length": str(len(first.body))}
            a = asyncio.ensure_future(client.post("/v1/decisions", headers={**h, **length},
                                                  content=first))
            await _gate_taken()  # J-1 holds the gate, its body half received
            b = asyncio.ensure_future(client.post("/v1/decisions", headers={**h, **length},
                                                  content=second))
            second.go.set()  # J-2's body is all there, but it waits for the gate
            small = await client.post("/v1/decisions", headers=h, json={
                "order_id": "SO-1", "customer_id": "CUST-1", "amount": "100.00",
                "currency": "EUR", "payment_term_days": 30})
            waiting = not a.done() and not b.done()
            first.go.set()
            return small, waiting, await a, await b

    small, waiting, a, b = asyncio.run(scenario())
    assert small.status_code == 200, small.text
    assert small.json()["outcome"] == "approve"
    assert waiting, "a large body was answered while another held the gate"
    for r in (a, b):
        body = problem(r, 422, "invalid_request")
        assert body["errors"][0]["path"] == "facts.customer.country_risk"


def test_a_large_body_that_trickles_in_is_cut_off_with_408(api, monkeypatch):
    monkeypatch.setattr(bodies, "LARGE_BODY_SECONDS", 0.3)

    async def scenario():
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cg") as client:
            slow = Trickle(junk("J-1"))  # never sent whole: ``go`` is not set
            h = {**api.h("order_entry"), "content-type": "application/json",
                 "content-length": str(len(slow.body))}
            cut = await client.post("/v1/decisions", headers=h, content=slow)
            after = await client.post("/v1/decisions", headers=h, content=junk("J-2"))
            return cut, after

    cut, after = asyncio.run(scenario())
    body = problem(cut, 408, "request_timeout")
    assert "did not arrive within 0.3 s (100000 bytes received)" in body["detail"], body
    problem(after, 422, "invalid_request")  # the gate was released
