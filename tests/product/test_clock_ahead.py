"""``--clock-ahead-days`` really moves the clock: the tests marked ``dates`` then run on a day
a year (or ten years) ahead, not on today's."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest


@pytest.mark.dates
def test_clock_ahead_moves_the_clock_of_the_test_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    days = request.config.getoption("--clock-ahead-days")
    probe = tmp_path / "probe"
    probe.write_text("now")
    # the file system's time is the kernel's, which time-machine does not move
    real = datetime.fromtimestamp(os.stat(probe).st_mtime, UTC)
    moved = datetime.now(UTC) - real
    assert abs(moved - timedelta(days=days)) < timedelta(minutes=5)
    assert date.today() - real.date() in (timedelta(days=days), timedelta(days=days + 1))
    if days:
        assert os.environ["CREDITGATE_MODE"] == "test"
        assert os.environ["CREDITGATE_CLOCK"] == f"+{days}d"
