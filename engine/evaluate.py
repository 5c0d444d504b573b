"""Evaluate a compiled policy for one request: ``evaluate(compiled, request) -> Decision``.

Pipeline: validate the request (``engine.inputs``) → derived values (``engine.values``) →
stage one in durable_rules (knock-outs, scorecard bins) → score and tier
(``engine.scoring``) → stage two in durable_rules (deposits, term caps, referrals) →
outcome, conditions, reasons, escalation and trail (``engine.outcome``). Each step runs
what ``rules.compile.compile_policy`` prepared once for the policy (``CompiledPolicy``:
``validate``, ``derive``, the groups' encoders and terms, ``scorecard``, ``outcome``), so per
request only values are computed.

Fail closed: a request that does not fit the policy raises ``InputErrors``; anything that
goes wrong inside raises ``EvaluationError`` (never a half-made or approving decision).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from engine import adapter
from engine.decision import Decision
from engine.inputs import InputErrors
from rules.compile import CompiledPolicy, Group, compile_policy
from rules.validate import load_policy

__all__ = ["EvaluationError", "InputErrors", "evaluate", "load", "engine_version"]

_register_lock = threading.Lock()


class EvaluationError(RuntimeError):
    """The decision could not be made; ``code`` is stable (``engine``, ``value_range``,
    ``scorecard``, ``internal``). Callers must treat it as "no decision" (refer or error),
    never as an approval."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def load(path: str) -> CompiledPolicy:
    """Load, validate and compile the policy file at ``path`` (raises ``PolicyErrors``)."""
    return compile_policy(load_policy(path))


def engine_version() -> str:
    """Version string recorded on every decision: Creditgate's and the engine's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("creditgate")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        own = "0+unknown"
    return f"creditgate {own}; {adapter.get_engine().engine_version}"


def _runtime(compiled: CompiledPolicy) -> dict[str, Any]:
    runtime = compiled.runtime
    if runtime is not None:
        return runtime
    with _register_lock:
        if compiled.runtime is None:
            eng = adapter.get_engine()
            handles = {}
            for name, group in compiled.groups.items():
                if group.rules:
                    handles[name] = eng.register(f"{compiled.name}_{name}", group.rules)
            compiled.runtime = {"engine": eng, "handles": handles, "version": engine_version()}
        return compiled.runtime


def _fact(compiled: CompiledPolicy, group: Group, env: dict[str, Any]) -> dict[str, int | str]:
    """The engine fact of ``group``: each field it reads, encoded (``group.encoders``), and
    each term computed (``group.term_values``). A value that does not fit its engine
    encoding raises ``EvaluationError("value_range")``."""
    fact: dict[str, int | str] = {}
    path = ""
    try:
        for path, key, enc in group.encoders:
            fact[key] = enc(env[path])
    except (ValueError, ArithmeticError) as exc:
        raise EvaluationError("value_range", f"{path}: {exc}") from None
    for key, term in group.term_values:
        fact[key] = term(env)
    return fact


def _match(compiled: CompiledPolicy, name: str, env: dict[str, Any]) -> frozenset[str]:
    runtime = _runtime(compiled)
    handle = runtime["handles"].get(name)
    if handle is None:
        return frozenset()
    fact = _fact(compiled, compiled.groups[name], env)
    try:
        return runtime["engine"].match(handle, fact)
    except adapter.EngineError as exc:
        raise EvaluationError("engine", f"{exc.code}: {exc}") from exc


def evaluate(
    compiled: CompiledPolicy,
    request: dict[str, Any],
    *,
    clock: Callable[[], datetime] | None = None,
    id_factory: Callable[[], str] | None = None,
) -> Decision:
    """Decide one request under ``compiled``.

    ``request``: nested JSON-shaped dict (see ``engine.inputs``); money as strings, ints or
    ``Decimal`` in the policy currency. ``clock`` gives ``evaluated_at`` (default: now, UTC);
    ``id_factory`` the ``decision_id`` (default: a random UUID). Same request and policy →
    same decision apart from those two.

    Raises ``InputErrors`` (request does not fit the policy) or ``EvaluationError``."""
    inputs, identifiers = compiled.validate(request)
    try:
        env = dict(inputs)
        derived, notes = compiled.derive(env)
        matched = set(_match(compiled, "s1", env))
        scoring = compiled.scorecard(matched)
        env.update(compiled.scorecard.stage_two_values(scoring))
        matched |= _match(compiled, "s2", env)
        return compiled.outcome.build(
            inputs=inputs,
            derived=derived,
            notes=notes,
            env=env,
            matched=matched,
            scoring=scoring,
            identifiers=identifiers,
            decision_id=id_factory() if id_factory is not None else str(uuid.uuid4()),
            evaluated_at=clock() if clock is not None else datetime.now(UTC),
            engine_version=_runtime(compiled)["version"],
        )
    except (EvaluationError, InputErrors):
        raise
    except Exception as exc:  # fail closed: no decision rather than a wrong one
        raise EvaluationError("internal", f"{type(exc).__name__}: {exc}") from exc
