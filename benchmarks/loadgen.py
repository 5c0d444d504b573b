"""A cheap HTTP/1.1 load generator for ``benchmarks/http.py``.

asyncio (uvloop when installed) over raw keep-alive sockets, one ``asyncio.Protocol`` per
connection ("client"), no HTTP library: every request is a ``bytes`` object built once
before the clock starts (request line, headers, JSON body); of each response only the
status line, ``Content-Length`` and the ``"outcome":"..."`` value of the body are looked
at. One request in flight per connection (no pipelining), as a real keep-alive client.

Two modes:

- ``closed_loop``: N connections each send the next request as soon as their previous
  answer is complete (a shared index, so requests go out in workload order). Gives the peak
  rate; latency = completion − send of that request.
- ``open_loop``: requests are *scheduled* at a fixed rate (request i at ``start + i/rate``)
  and handed to the first free connection; latency = completion − scheduled time, so time
  spent queued behind a slow answer counts (no coordinated omission). ``lag_p99``: how late
  the generator's scheduler queued requests (its own lateness: timer resolution, a busy
  CPU); ``wait_p99``: scheduled time → actually sent (lag + waiting for a free connection).

Each run reports the generator's own CPU time (``time.process_time`` of this process over
the timed part: run it in a process doing nothing else meanwhile).
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

try:  # pragma: no cover - depends on the environment
    import uvloop

    LOOP = "uvloop"
    _loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover
    LOOP = "asyncio"
    _loop_factory = None

__all__ = ["LOOP", "Result", "closed_loop", "encode", "open_loop", "run"]

_OUTCOME = b'"outcome":"'
_CL = b"\r\ncontent-length:"


def encode(
    method: str, path: str, host: str, port: int, headers: dict[str, str], body: Any
) -> bytes:
    """One complete HTTP/1.1 request (keep-alive) as bytes; ``body`` JSON-encoded compactly."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    head = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += ["content-type: application/json", f"content-length: {len(data)}", "", ""]
    return "\r\n".join(head).encode("latin-1") + data


class ConnectionLost(Exception):
    pass


class _Conn(asyncio.Protocol):
    """One keep-alive connection; ``request(data)`` → ``(status, outcome, t_done, nbytes)``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, str, float, int]] | None = None
        self.end = -1  # end of the current response in buf, once its headers are in
        self.body = -1  # start of its body
        self.errors: list[bytes] = []  # first bytes of some non-200 bodies

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionLost(f"server closed the connection ({exc})"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.end < 0:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            j = buf.find(_CL, 0, i + 2)
            if j < 0:
                j = buf.lower().find(_CL, 0, i + 2)
            if j < 0:
                assert self.waiter is not None
                self.waiter.set_exception(ConnectionLost("response without Content-Length"))
                return
            k = buf.find(b"\r\n", j + 2)
            self.body = i + 4
            self.end = self.body + int(buf[j + len(_CL) : k])
        if len(buf) < self.end:
            return
        t_done = time.perf_counter()
        status = int(buf[9:12])
        o = buf.find(_OUTCOME, self.body, self.end)
        if o >= 0:
            o += len(_OUTCOME)
            outcome = buf[o : buf.find(b'"', o)].decode()
        else:
            outcome = ""
        if status != 200 and len(self.errors) < 3:
            self.errors.append(bytes(buf[self.body : min(self.end, self.body + 300)]))
        nbytes = self.end - self.body
        del buf[: self.end]
        self.end = self.body = -1
        waiter, self.waiter = self.waiter, None
        assert waiter is not None
        waiter.set_result((status, outcome, t_done, nbytes))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, str, float, int]]:
        assert self.waiter is None and self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class Result(dict):
    """``n, wall, rate, p50, p99, max`` (ms), ``latencies`` (s, per request), ``statuses``,
    ``outcomes``, ``cpu`` (generator CPU s), ``cpu_us`` (per request), ``cpu_share`` (of
    all cores), ``resp_bytes`` (mean body size), ``errors`` (sample bodies), and for the
    open loop ``target``, ``lag_p99`` and ``wait_p99`` (ms)."""


def _pct(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _connect(host: str, port: int, n: int) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(n):
        _, proto = await loop.create_connection(_Conn, host, port)
        conns.append(proto)
    return conns


async def _warm(conns: list[_Conn], warmup: Sequence[bytes]) -> None:
    """Send the warm-up requests round-robin over the connections (each connection gets
    some, so every worker process a connection landed on is warmed), then wait."""
    if not warmup:
        return

    async def one(k: int) -> None:
        for data in warmup[k :: len(conns)]:
            status, *_ = await conns[k].request(data)
            if status != 200:
                raise RuntimeError(f"warm-up request answered {status}: {conns[k].errors[-1:]!r}")

    await asyncio.gather(*(one(k) for k in range(len(conns))))


def _finish(
    res: Result,
    lat: list[float],
    statuses: Counter[int],
    outcomes: Counter[str],
    nbytes: int,
    wall: float,
    cpu: float,
    conns: list[_Conn],
) -> Result:
    import os

    s = sorted(lat)
    n = len(s)
    res.update(
        n=n,
        wall=wall,
        rate=n / wall,
        p50=_pct(s, 0.50) * 1e3,
        p99=_pct(s, 0.99) * 1e3,
        max=s[-1] * 1e3,
        latencies=lat,
        statuses=statuses,
        outcomes=outcomes,
        cpu=cpu,
        cpu_us=cpu / n * 1e6,
        cpu_share=cpu / wall / (os.cpu_count() or 1),
        resp_bytes=nbytes / n,
        errors=[e for c in conns for e in c.errors][:3],
    )
    return res


async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    clients: int,
    warmup: Sequence[bytes] = (),
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    noise: bytes | None = None,
    noise_connections: int = 10,
) -> Result:
    """Peak: ``clients`` connections, each sending the next request when its last is done.
    ``on_start`` / ``on_stop`` are called right before / after the timed part (after the
    warm-up), e.g. to read the server's CPU time. ``noise``: meanwhile
    ``noise_connections`` more connections send this request over and over, from the start
    of the timed part until its last request is answered (results in ``noise``: ``n``,
    ``rate``, ``p50``, ``p99`` (ms), ``statuses``, ``resp_bytes``)."""
    conns = await _connect(host, port, clients)
    noisy = await _connect(host, port, noise_connections) if noise is not None else []
    await _warm(conns, warmup)
    n = len(requests)
    lat = [0.0] * n
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    nbytes = 0
    nxt = 0

    async def worker(c: _Conn) -> None:
        nonlocal nxt, nbytes
        perf = time.perf_counter
        while nxt < n:
            i = nxt
            nxt += 1
            t0 = perf()
            status, outcome, t1, size = await c.request(requests[i])
            lat[i] = t1 - t0
            statuses[status] += 1
            outcomes[outcome or str(status)] += 1
            nbytes += size

    done = False
    noise_lat: list[float] = []
    noise_statuses: Counter[int] = Counter()
    noise_bytes = 0

    async def noisy_worker(c: _Conn) -> None:
        nonlocal noise_bytes
        perf = time.perf_counter
        while not done:
            t0 = perf()
            status, _, t1, size = await c.request(noise)  # type: ignore[arg-type]
            noise_lat.append(t1 - t0)
            noise_statuses[status] += 1
            noise_bytes += size

    gc.collect()
    if on_start is not None:
        on_start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    background = [asyncio.ensure_future(noisy_worker(c)) for c in noisy]
    await asyncio.gather(*(worker(c) for c in conns))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    done = True
    await asyncio.gather(*background)
    if on_stop is not None:
        on_stop()
    for c in [*conns, *noisy]:
        assert c.transport is not None
        c.transport.close()
    res = Result(clients=clients)
    if noise is not None:
        s = sorted(noise_lat)
        res["noise"] = {
            "n": len(s), "rate": len(s) / wall, "p50": _pct(s, 0.5) * 1e3,
            "p99": _pct(s, 0.99) * 1e3, "statuses": noise_statuses,
            "resp_bytes": noise_bytes / max(1, len(s)), "connections": noise_connections,
            "request_bytes": len(noise),
        }  # fmt: skip
    return _finish(res, lat, statuses, outcomes, nbytes, wall, cpu, conns)


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    connections: int = 16,
    warmup: Sequence[bytes] = (),
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Result:
    """Fixed rate: request i is due at ``start + i / rate`` and goes out on the first free
    connection (queued in the generator while all are busy); latency is measured from the
    due time."""
    conns = await _connect(host, port, connections)
    await _warm(conns, warmup)
    n = len(requests)
    lat = [0.0] * n
    lag = [0.0] * n  # scheduler: queued after its due time (the generator's own lateness)
    wait = [0.0] * n  # due time → sent (lag + waiting for a free connection)
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    nbytes = 0
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    interval = 1.0 / rate
    perf = time.perf_counter

    async def worker(c: _Conn, start: float) -> None:
        nonlocal nbytes
        while True:
            i = await queue.get()
            if i is None:
                return
            due = start + i * interval
            wait[i] = perf() - due
            status, outcome, t1, size = await c.request(requests[i])
            lat[i] = t1 - due
            statuses[status] += 1
            outcomes[outcome or str(status)] += 1
            nbytes += size

    gc.collect()
    if on_start is not None:
        on_start()
    cpu0 = time.process_time()
    start = perf() + 0.005
    workers = [asyncio.ensure_future(worker(c, start)) for c in conns]
    for i in range(n):
        delay = start + i * interval - perf()
        if delay > 0:
            await asyncio.sleep(delay)
        lag[i] = perf() - start - i * interval
        queue.put_nowait(i)
    for _ in conns:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    wall, cpu = perf() - start, time.process_time() - cpu0
    if on_stop is not None:
        on_stop()
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    res = Result(clients=connections, target=rate)
    lag.sort()
    wait.sort()
    res["lag_p99"] = _pct(lag, 0.99) * 1e3
    res["wait_p99"] = _pct(wait, 0.99) * 1e3
    return _finish(res, lat, statuses, outcomes, nbytes, wall, cpu, conns)


def run(coro: Any) -> Any:
    """Run ``coro`` on a new event loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(coro)
