"""Back-test executors: identical figures on 1 and 2 processes, results in input order.

The German credit rows (../shared/data/german-credit/german.data, skipped where absent) are
back-tested in this process and on a pool of worker processes that compile the policy
themselves from its text; every figure but the timing must be the same. Order is checked
on chunks that finish out of order.
"""

from __future__ import annotations

import copy
import functools
import os
import time
from pathlib import Path

import pytest

from analysis.backtest import (
    BacktestResult,
    PolicySource,
    compiled_policy,
    decide_chunk,
    render,
    run_backtest,
)
from analysis.datasets import read_dataset
from analysis.executor import Executor, ExecutorError, LocalExecutor, ProcessExecutor
from engine.evaluate import load

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "examples" / "german-credit" / "policy.yaml"
DATA = ROOT.parent / "shared" / "data" / "german-credit" / "german.data"
german = pytest.mark.skipif(not DATA.exists(), reason=f"shared data missing: {DATA}")


def figures(r: BacktestResult) -> dict:
    """Everything a back-test reports except the wall-clock time."""
    return {
        "policy": r.policy, "currency": r.currency, "n": r.n, "goods": r.goods, "bads": r.bads,
        "strategies": [(s.name, s.counts, s.cost, s.cost_refers_granted)
                       for s in r.strategies],
        "errors": (r.error_count, [str(e) for e in r.errors]),
        "tiers": {t: dict(c) for t, c in r.tiers.items()},
        "tier_approved": dict(r.tier_approved),
        "reasons": {k: dict(c) for k, c in r.reasons.items()},
        "text": render(r).split("\n", 2)[2],  # without the summary and timing lines
    }


def _slow_echo(delays: dict[int, float], chunk: list[int]) -> list[int]:
    """The chunk back after a delay that depends on it (early chunks finish last)."""
    time.sleep(delays.get(chunk[0], 0.0))
    return [x * 10 for x in chunk]


def _fail_on(bad: int, chunk: list[int]) -> list[int]:
    if bad in chunk:
        raise ArithmeticError(f"chunk with {bad}")
    return chunk


def _die(chunk: list[int]) -> list[int]:
    os._exit(70)  # a worker process ending abruptly (as a native crash would)


@pytest.fixture(scope="module")
def compiled():
    return load(str(POLICY))


@pytest.fixture(scope="module")
def rows() -> list[tuple[dict, str]]:
    return list(read_dataset(DATA))


@pytest.fixture(scope="module")
def two() -> ProcessExecutor:
    with ProcessExecutor(2) as executor:
        yield executor


def test_executors_fit_the_interface() -> None:
    assert isinstance(LocalExecutor(), Executor) and LocalExecutor().in_process
    p = ProcessExecutor()
    assert isinstance(p, Executor) and not p.in_process
    assert p.workers == (os.cpu_count() or 1) and p.max_pending == 2 * p.workers
    with pytest.raises(ValueError, match="at least 1"):
        ProcessExecutor(0)


@german
def test_german_data_gives_the_same_figures_on_one_and_two_processes(compiled, rows, two):
    one = run_backtest(compiled, rows, progress=False, executor=LocalExecutor())
    default = run_backtest(compiled, rows, progress=False)
    many = run_backtest(compiled, rows, progress=False, executor=two, chunk_rows=64)
    assert figures(many) == figures(one) == figures(default)
    p = one.policy_strategy
    assert one.n == 1000 and p.n_of("approve") > 0 and p.n_of("decline") > 0
    assert sum(sum(c.values()) for c in one.tiers.values()) == 1000


@german
def test_row_errors_keep_their_row_numbers_on_many_processes(compiled, rows, two):
    mixed = []
    for i, (request, label) in enumerate(rows[:300]):
        if i % 37 == 5:
            request = copy.deepcopy(request)
            request["customer"]["age"] = "old"
        mixed.append((request, label))
    one = run_backtest(compiled, mixed, progress=False)
    many = run_backtest(compiled, mixed, progress=False, executor=two, chunk_rows=7)
    assert figures(many) == figures(one)
    assert [e.row for e in many.errors] == [i + 1 for i in range(300) if i % 37 == 5][:10]
    assert many.errors[0].order_id == "german-6"


@german
def test_worker_outcomes_come_back_in_row_order(compiled, rows, two):
    source = PolicySource.of(compiled)
    requests = [r for r, _ in rows[:120]]
    chunks = [requests[i:i + 10] for i in range(0, len(requests), 10)]
    local = [o for c in chunks for o in decide_chunk(compiled, c)]
    remote = [o for out in two.map_chunks(functools.partial(decide_chunk, source), chunks)
              for o in out]
    assert remote == local
    assert len({o.outcome for o in local}) >= 2


def test_map_chunks_keeps_input_order_when_chunks_finish_out_of_order(two) -> None:
    chunks = [[i, i + 1] for i in range(0, 16, 2)]
    delays = {0: 0.6, 2: 0.4, 4: 0.2}  # the first chunks are the slowest
    fn = functools.partial(_slow_echo, delays)
    want = [[10 * x for x in c] for c in chunks]
    assert list(two.map_chunks(fn, chunks)) == want
    assert list(LocalExecutor().map_chunks(fn, chunks)) == want
    # a generator of chunks is consumed lazily, never more than max_pending ahead
    pulled = []

    def gen():
        for c in chunks:
            pulled.append(c[0])
            yield c

    it = two.map_chunks(fn, gen())
    assert next(it) == want[0]
    assert len(pulled) <= two.max_pending + 1
    assert list(it) == want[1:]


def test_an_exception_in_a_chunk_reaches_the_caller(two) -> None:
    chunks = [[i] for i in range(10)]
    got = []
    with pytest.raises(ArithmeticError, match="chunk with 4"):
        for out in two.map_chunks(functools.partial(_fail_on, 4), chunks):
            got.append(out)
    assert got == [[0], [1], [2], [3]]


def test_a_dying_worker_is_an_executor_error() -> None:
    with ProcessExecutor(1) as executor:
        with pytest.raises(ExecutorError, match="ended abruptly"):
            list(executor.map_chunks(_die, [[1], [2]]))


def test_a_worker_compiles_only_the_policy_it_was_sent(compiled) -> None:
    source = PolicySource.of(compiled)
    assert compiled_policy(source).policy.sha256 == compiled.policy.sha256
    assert compiled_policy(source) is compiled_policy(source)  # once per process
    tampered = PolicySource(source.text + "\n# edited\n", source.sha256, source.file)
    with pytest.raises(ValueError, match="expected " + source.sha256):
        compiled_policy(tampered)


@german
def test_cli_workers_option_gives_the_same_report(tmp_path) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    lines = DATA.read_text(encoding="utf-8").splitlines(keepends=True)[:300]
    data = tmp_path / "german.data"
    data.write_text("".join(lines), encoding="utf-8")
    runner = CliRunner()
    reports = []
    for workers in ("1", "2"):
        r = runner.invoke(app, ["backtest", str(POLICY), str(data), "--no-progress",
                                "--workers", workers])
        assert r.exit_code == 0, r.output
        summary, timing, rest = r.stdout.split("\n", 2)
        assert "on 300 rows" in summary and "decisions/s" in timing
        reports.append((summary, rest))
    assert reports[0] == reports[1]
    r = runner.invoke(app, ["backtest", str(POLICY), str(data), "--workers", "0"])
    assert r.exit_code == 2
