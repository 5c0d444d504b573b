"""Structured logs: every ``creditgate`` record as one JSON line on stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and every ``extra``
    field (``decision_id``, ``order_id``, ``outcome``, ``request_id``, ...)."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._RESERVED and not key.startswith("_") and key != "color_message":
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode("utf-8")


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which test runners and servers may replace)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO, *, root: bool = False) -> None:
    """Send the ``creditgate`` loggers (or, with ``root``, every logger) to stderr as JSON
    lines. Idempotent."""
    target = logging.getLogger() if root else logging.getLogger("creditgate")
    if not any(getattr(h, "_creditgate", False) for h in target.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._creditgate = True  # type: ignore[attr-defined]
        target.addHandler(handler)
    target.setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    if not root:
        target.propagate = False
