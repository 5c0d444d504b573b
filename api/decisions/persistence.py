"""The decision log of one database: decide and record orders (``Decisions.decide``, one
order in its own transaction; ``api.decisions.deciding`` is the transaction and
``api.decisions.writer`` groups concurrent HTTP decisions into one), and read the log
(``get``, ``search``, ``iterate``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from api.core.database import Database, read_batches, read_page, read_records
from api.core.params import query_bound
from api.decisions.deciding import Decided, DecideJob, decide_batch
from api.decisions.records import log_dict
from api.decisions.tables import DecisionLog
from engine.decision import Decision

__all__ = ["KINDS", "Decisions"]

KINDS = ("new", "repeat", "amended")


class Decisions:
    """The decisions and the decision log of one database."""

    def __init__(self, db: Database):
        self.db = db

    def decide(
        self,
        order: dict[str, Any],
        evaluate_fn: Callable[[dict[str, Any]], Decision],
        caller: str,
        *,
        decision_currency: str | None = None,
        minor_units: int = 2,
        today: date | None = None,
        max_rate_age_days: int | None = None,
    ) -> tuple[Decision, str]:
        """Decide ``order`` and record it, atomically; returns ``(decision, kind)`` with
        kind ``new``, ``repeat`` (same order again: the stored decision, nothing reserved)
        or ``amended`` (changed order: the previous reservation is released first).

        Raises ``UnknownCustomer``, ``ValueError`` (order does not fit: bad fields, currency
        other than the customer's), ``OrderConflict`` (a ``ValueError``: order id used by
        another customer; the order was cancelled — even the same content again is refused,
        never answered as a ``repeat``; an amendment of a (partly) invoiced order), whatever
        ``evaluate_fn`` raises (nothing is written then), ``ChainBroken`` and
        ``StoreUnavailable``.

        With ``decision_currency`` (the policy's), an order in another currency is
        converted with the latest rate on or before its ``order_date`` (default ``today``,
        else the clock's date), or the latest rate on or before today if that is higher
        (``api.fx.persistence.convert``): ``amount × rate`` rounded half-even to
        ``minor_units``; the engine sees the converted amount, the log row's ``fx`` keeps the
        original amount, the rate and its date. No rate → ``FxRateMissing`` (never 1:1); so
        is a rate more than ``max_rate_age_days`` days older than the order date (None: no
        age limit)."""
        decided = self.decide_one(
            DecideJob(
                order,
                evaluate_fn,
                caller,
                decision_currency=decision_currency,
                minor_units=minor_units,
                today=today,
                max_rate_age_days=max_rate_age_days,
            )
        )
        return decided.decision, decided.kind

    def decide_one(self, job: DecideJob) -> Decided:
        """``job`` decided and recorded in its own transaction (raises what refused it)."""
        (result,) = decide_batch(self.db, [job])
        if isinstance(result, BaseException):
            raise result
        return result

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """One log record by decision id; raises ``UnreadableRecord`` if it cannot be read."""
        with self.db.session(write=False) as s:
            q = (
                select(DecisionLog)
                .where(
                    DecisionLog.business_unit == self.db.unit,
                    DecisionLog.decision_id == decision_id,
                )
                .limit(1)
            )
            rows = read_records(s, q, DecisionLog, log_dict)
            return rows[0] if rows else None

    def search(
        self, *, cursor: int | None = None, limit: int = 50, **filters: Any
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Log records, newest first, that pass ``filters`` (``_filtered``). ``cursor`` is
        the ``next_cursor`` of the previous page; returns ``(rows, next_cursor or None)``."""
        q = self._filtered(select(DecisionLog), **filters)
        return read_page(self.db, q, DecisionLog, log_dict, cursor=cursor, limit=limit)

    def iterate(self, *, batch: int = 500, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every log record that passes ``filters`` (``_filtered``), in ``seq`` order, read
        in batches of ``batch`` (one short read transaction each, keyset pagination on
        ``seq``). A record that cannot be read raises ``UnreadableRecord`` before any record
        of its batch is yielded (so an unreadable record in the first batch fails before
        anything is sent): never a silent end."""
        q = self._filtered(select(DecisionLog), **filters)
        return read_batches(self.db, q, DecisionLog, log_dict, batch=batch)

    def _filtered(
        self,
        q: Any,
        *,
        customer_id: str | None = None,
        order_id: str | None = None,
        outcome: str | None = None,
        kind: str | None = None,
        reason_code: str | None = None,
        rule_id: str | None = None,
        policy_version: str | None = None,
        date_from: date | datetime | None = None,
        date_to: date | datetime | None = None,
    ) -> Any:
        """``q`` limited to this unit's records that pass every filter given: the customer,
        the order (every decision of it), ``outcome``, ``kind`` (new, repeat, amended),
        ``reason_code`` (a reason the decision gave), ``rule_id`` (a rule that matched),
        ``policy_version`` (the version, or the sha256), ``date_from`` inclusive and
        ``date_to`` exclusive on ``created_at`` (a plain date means its whole day: to the
        start of the next day). An unknown filter name is a ``TypeError``."""
        q = q.where(DecisionLog.business_unit == self.db.unit)
        if customer_id is not None:
            q = q.where(DecisionLog.customer_id == customer_id)
        if order_id is not None:
            q = q.where(DecisionLog.order_id == order_id)
        if outcome is not None:
            q = q.where(DecisionLog.outcome == outcome)
        if kind is not None:
            q = q.where(DecisionLog.kind == kind)
        if reason_code is not None:
            # the stored decision is compact JSON: a reason is {"code":"X",...}; a value
            # holding the same text is escaped (\"code\"), and no other object has "code"
            needle = '"code":' + json.dumps(reason_code, ensure_ascii=False)
            q = q.where(self._contains(DecisionLog.decision, needle))
        if rule_id is not None:
            q = q.where(self._contains(DecisionLog.rules_matched, f" {rule_id} "))
        if policy_version is not None:
            q = q.where(_policy_is(policy_version))
        if date_from is not None:
            q = q.where(col(DecisionLog.created_at) >= query_bound(date_from, end=False))
        if date_to is not None:
            q = q.where(col(DecisionLog.created_at) < query_bound(date_to, end=True))
        return q

    def _contains(self, column: Any, needle: str) -> Any:
        """``needle`` occurs in ``column``: exact and case-sensitive on both databases (not
        LIKE, which SQLite compares without case and which reads % and _ as wildcards)."""
        find = sa.func.instr if self.db.dialect == "sqlite" else sa.func.strpos
        return find(column, needle) > 0


_SHA256_PREFIX = re.compile(r"(?:sha256:)?([0-9a-fA-F]{12,64})")


def _policy_is(value: str) -> Any:
    """The policy version ``value``, or a sha256 given whole or by a prefix of at least 12
    hex digits (as ``creditgate validate`` prints it), ``sha256:`` in front allowed."""
    match = _SHA256_PREFIX.fullmatch(value)
    if match is None:
        return DecisionLog.policy_version == value
    digest = match.group(1).lower()
    return sa.or_(
        DecisionLog.policy_version == value,
        col(DecisionLog.policy_sha256).startswith(digest, autoescape=True),
    )
