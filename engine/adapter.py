"""engine.adapter — the only module that imports durable_rules.

Everything else in Creditgate talks to durable_rules 2.0.28 through this module. It turns
"rule id → condition" mappings into internal durable_rules rulesets and answers "which rule
ids are true for this fact", making every measured defect of the engine harmless (see
``docs/adapter-spec.md`` and ``shared/notes/durable-rules.md``).

Public API::

    engine = get_engine()                         # process-wide, one durable Host
    handle = engine.register(key, rules)          # -> RulesetHandle (same key -> same handle)
    ids = engine.match(handle, fact)              # -> frozenset[str]
    engine.release(handle)                        # frees the C rulesets (delete_ruleset)
    engine.engine_version                         # "durable_rules 2.0.28"

Errors (all ``EngineError`` with a stable ``.code``):

=================  ===================  ===================================================
code               class                raised when
=================  ===================  ===================================================
engine_value       EngineValueError     a fact value / rule literal is not an int in int64
                                        (bool, float, Decimal, None, ... are refused) or a
                                        str that is too long / not UTF-8 encodable; a fact
                                        value whose type differs from the type the rules use
engine_type        EngineError          one field compared with int literals in one place and
                                        str literals in another (register)
engine_expr        EngineError          malformed or unsupported expression: arithmetic
                                        ($add $sub $mul $div $l $r $m), $ex / $nex, field
                                        references, unknown operators, empty $and / $or
engine_field       EngineError          field name not a plain identifier, reserved
                                        (``sid``, ``id``, ``cg__*``), or two field names of
                                        one ruleset with the same 32-bit FNV-1a hash
engine_key         EngineError          bad key, or a key registered again with other rules
engine_released    EngineError          ``match`` on a released handle
engine_rule        EngineRuleError      the engine reported an error or misbehaved while
                                        registering or matching (never partial results)
=================  ===================  ===================================================

How each defect is neutralised
------------------------------
1. *String vs number comparisons* (``"9000" > 10000`` is true; ``""`` equals 10): every
   field has one type across the ruleset (``engine_type`` otherwise) and a fact value of the
   other type is refused (``engine_value``). Measured too: string *ordering* is wrong in the
   engine (``reduceString`` runs ``strncmp`` over the longer length on raw JSON text, so
   ``"ab" < "ab "`` is false). Ordering comparisons with a str literal are therefore never
   sent to the engine: each becomes a synthetic 0/1 field (``cg__s<n>``) computed in Python
   (code-point order, like Python's ``<``) and the engine tests ``{"cg__s<n>": 1}``.
2. *Floats / big ints*: values must be ``int`` (bool refused) within int64, or ``str``; the
   engine silently caps ints beyond int64 (measured: 2**64+5 equals 2**63-1). Strings: the
   engine keeps string lengths in 16 bits (measured: ``"a" * 65546 == "a" * 10`` is true),
   so a str whose JSON text exceeds ``MAX_STR_BYTES`` (32,767 bytes) is refused.
3. *Division by zero kills the process* (SIGFPE): arithmetic operators are refused.
4. *State-object loops*: every rule is ``{"$and": [{"cg__fact": 1}, ...]}``; only request
   facts carry ``cg__fact``; ``$ex`` / ``$nex`` are refused. The adapter also never calls
   ``update_state``, so the state object is never re-asserted.
5. *Swallowed action exceptions*: there are no Python actions. ``match`` drives the C core
   itself (``assert_fact`` → ``start_action_for_state`` → ``complete_and_start_action``),
   reads the fired rule name from each action message, and raises ``EngineRuleError`` when
   anything is off: an engine error, a state carrying ``exception``, a catch-all that did not
   fire, or a failing ``action_hook`` (test hook, called on the caller's thread per action).
   Going through ``Host.assert_fact`` instead would cost ~11 µs per matched rule (Closure,
   state JSON round trip, ``update_state``); driving the C calls costs ~1.4 µs.
6. *1,024 sessions per ruleset*: one fresh session id per ``match``, ``delete_state`` in
   ``finally`` for every chunk. Memory stays flat (see figures below).
7. *delete_state after no action crashes*: each chunk has a catch-all rule
   (``{"cg__fact": 1}``) that fires for every request fact, and its firing is verified.
   If an assert fails (no action ran), a primer fact ``{"cg__fact": 1, "cg__prime": 1}`` is
   asserted into the same session first (fires only the catch-all), then the session is
   deleted; measured: 2,000 failed asserts recovered this way without a crash, whereas
   ``get_state``/``delete_state`` right after a failed assert segfaults.
8. *Background dispatcher*: the process-wide Host is a subclass whose ``_run`` does nothing,
   so no timer thread exists; all actions run inside ``match`` on the caller's thread.
9. *Thread safety*: one process-wide lock around every C call sequence (register, the whole
   of ``match`` across chunks, release). ``os.register_at_fork`` renews it in a child.
10. *Size limits*: see below; ``register`` decomposes and chunks, ``match`` unions.
11. *No ruleset removal*: the C core does export ``delete_ruleset``; ``release`` calls it for
    every chunk and drops every Python reference (handle plan, durable ``Ruleset`` objects,
    Host directory entries).

Measured limits (durable_rules 2.0.28, CPython 3.11, this machine; /tmp experiments)
----------------------------------------------------------------------------------
- Alpha DFS stack: 64 entries (``MAX_STACK_SIZE``). 64 rules matching at once in one
  ruleset work, 65 → error 303, after which ``delete_state`` of that session segfaults.
  Same for one ``$or`` with 64 / 65 alternatives true at once.
- Children of one alpha node: 511 work; 512 → ``assert_fact`` hangs; 513 → ``create_ruleset``
  hangs (open-addressing table of 512 slots).
- Operators per rule: 15 ``$and``/``$or`` nodes (incl. the guard wrapper) work, 16 → error
  113 at create (``MAX_SEQUENCE_EXPRESSIONS`` 32, two entries per operator). Leaves do not
  count: an ``$and`` of 200 leaves and an ``$or`` of 100 leaves create fine.
- Properties per fact: 251 user fields + ``cg__fact`` + ``sid`` (+ the engine's ``id``) work;
  252 → error 302.
- Field names are identified by their 32-bit FNV-1a hash only (measured: ``f6059`` and
  ``f264602`` collide and the engine confuses them).
- C handles: 131,071 live rulesets at most (``MAX_HANDLES``); released ones are reused.

Chunking (rigorous bound, with margin)
--------------------------------------
The stack depth during one assert is at most the number of alpha-network paths that can be
live at once (pending stack entries have disjoint subtrees, each ending in such a path);
node sharing between rules never adds paths. Paths of a condition: leaf 1, ``$and`` the
product, ``$or`` the sum, except that equalities on one field directly inside an ``$or``
count once (a membership test ``x in [...]``: at most one is true). The adapter keeps:

- per internal rule ("atom"): ≤ ``ATOM_PATH_BUDGET`` (16) paths, ≤ ``ATOM_OP_BUDGET`` (7 of
  15) operators, ≤ ``ATOM_NODE_BUDGET`` (128) alpha nodes, ≤ ``ATOM_FIELD_BUDGET`` (64)
  fields. A larger condition is split at its ``$and`` / ``$or`` nodes into several atoms
  recombined in Python (an ``$or`` of 100 alternatives all true, a 700-value membership, an
  ``$and`` of 300 leaves, 20 nested operators: all exact; no DNF blow-up);
- per chunk (one internal durable ruleset plus its catch-all): Σ paths + 1 ≤
  ``CHUNK_PATH_BUDGET`` (32 = half the measured stack of 64), Σ nodes + 1 ≤
  ``CHUNK_NODE_BUDGET`` (256 of 511 children per node), ≤ ``CHUNK_FIELD_BUDGET`` (128 of
  251) fields. Every atom has ≥ 1 path, so a chunk holds ≤ 31 atoms.

A differential test (hypothesis, random nested conditions, all operators, int and str)
checks ``match`` against a Python evaluator; 31 × 60 random rulesets × 40 facts agreed
while measuring.

``match`` serialises each used fact value once, builds each chunk's JSON from those cached
fragments (only the fields that chunk reads, plus ``cg__fact`` and ``sid``), skips chunks
none of whose fields are present (no condition can be true there), and unions the fired
atoms. The engine's own cost dominates: per chunk ~6 µs (assert + catch-all + delete), per
internal rule ~0.35 µs even when it does not match (it grows super-linearly with the rules
of one ruleset: a 31-rule ruleset costs 16 µs per fact, a 100-rule one 72 µs), per fired
rule ~1 µs; plus ~0.3 µs per fact field in Python.

Semantics
---------
A rule is true when its condition is true for the fact. A field missing from the fact
makes every comparison on it false (``$neq`` too) — the engine's own semantics, kept; the
caller should send every field its rules read. Fact fields no rule reads are validated
(type, range) but not sent. Strings compare by code point (Python's order).

Timings (µs per ``match``; best of 5 medians over the same 2,000 facts; rules of 2-3
conditions on 16 int and 4 str fields, some memberships; 16-24 % of rules matching;
shared 2-core machine under load ~2)
-------------------------------------------------------------------------------------
====== ====== ======= ======================================
rules  chunks µs      notes' raw Host.assert_fact, no guards
====== ====== ======= ======================================
30     1      31      57
100    4      90      117
300    10     250     164
1000   33     990     344 (one ruleset; fails beyond 64 true)
====== ====== ======= ======================================

Runs vary by ±15 % on this shared machine (1000 rules: 988-1085 µs).

Memory (child processes): 20,000 matches on one handle after warm-up grow RSS by 0 KB;
50 register + 20 matches + release cycles of a 60-rule ruleset grow RSS by 172 KB, the same
50 cycles without release by 43,964 KB (~0.9 MB per ruleset). ``delete_ruleset`` frees the
node, next, string and expression pools, the state pool and the ruleset struct; sessions
are already deleted after each match, so nothing of the ruleset stays in C. Not freed: the
C handle slot is recycled (not freed); pages the libc heap keeps mapped; durable Python
objects are dropped and garbage collected.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from json.encoder import encode_basestring as _json_str  # type: ignore[attr-defined]
from typing import Any, Final, NamedTuple

import durable_rules_engine as _dre
from durable import engine as _durable

__all__ = [
    "DurableRulesEngine",
    "EngineError",
    "EngineRuleError",
    "EngineValueError",
    "RulesetHandle",
    "get_engine",
]

# ---------------------------------------------------------------------------------------
# Limits (measured figures in the module docstring)
# ---------------------------------------------------------------------------------------
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_STR_BYTES: Final = 32_767
"""Longest str (bytes of its JSON text between the quotes) sent to the engine; the engine
keeps lengths in 16 bits and compares wrongly from 65,536 bytes on."""

MEASURED_STACK_LIMIT: Final = 64
MEASURED_CHILDREN_LIMIT: Final = 511
MEASURED_OPERATOR_LIMIT: Final = 15
MEASURED_FACT_FIELD_LIMIT: Final = 251

CHUNK_PATH_BUDGET: Final = 32
ATOM_PATH_BUDGET: Final = 16
ATOM_OP_BUDGET: Final = 7
ATOM_FIELD_BUDGET: Final = 64
CHUNK_FIELD_BUDGET: Final = 128
ATOM_NODE_BUDGET: Final = 128
CHUNK_NODE_BUDGET: Final = 256

GUARD: Final = "cg__fact"
PRIMER: Final = "cg__prime"
CATCH_ALL: Final = "cg__all"
_SYNTH_PREFIX: Final = "cg__s"
_RESERVED: Final = frozenset({"sid", "id"})

_KEY_RE: Final = re.compile(r"[A-Za-z0-9_]{1,120}")
_FIELD_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_COMPARISONS: Final = frozenset({"$neq", "$gt", "$gte", "$lt", "$lte"})
_ORDERINGS: Final = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_ARITHMETIC: Final = frozenset({"$add", "$sub", "$mul", "$div", "$l", "$r", "$m"})
_EXISTENCE: Final = frozenset({"$ex", "$nex"})


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------
class EngineError(Exception):
    """Base class of every adapter error; ``code`` is stable (see module docstring)."""

    def __init__(self, message: str, code: str = "engine"):
        super().__init__(message)
        self.code = code


class EngineValueError(EngineError, ValueError):
    """A fact value or rule literal the engine cannot hold exactly (``engine_value``)."""

    def __init__(self, message: str):
        super().__init__(message, "engine_value")


class EngineRuleError(EngineError):
    """The engine reported an error or an action failed (``engine_rule``)."""

    def __init__(self, message: str):
        super().__init__(message, "engine_rule")


class _Fault(Exception):
    """Internal: the engine did something it must not; becomes ``EngineRuleError``."""


# ---------------------------------------------------------------------------------------
# The durable Host: one per process, no dispatcher threads
# ---------------------------------------------------------------------------------------
class _QuietHost(_durable.Host):
    """durable Host whose ``_run`` does nothing: no timer thread ever runs actions."""

    def _run(self) -> None:
        return None


def _never_runs(c: Any) -> None:
    """``run`` callable required by durable's Ruleset; the adapter never lets durable's
    Python action machinery run (it drives the C core itself)."""
    raise RuntimeError("durable Python action path must not be used by engine.adapter")


_LOCK = threading.Lock()
_HOST_LOCK = threading.Lock()
_host: _QuietHost | None = None
_sids = itertools.count(1)
_ruleset_names = itertools.count(1)


def _renew_lock_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock_in_child)


def _the_host() -> _QuietHost:
    global _host
    with _HOST_LOCK:
        if _host is None:
            _host = _QuietHost()
        return _host


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------
def _check_int(v: int, where: str) -> int:
    if v < INT64_MIN or v > INT64_MAX:
        raise EngineValueError(f"{where}: int {v} outside int64 (the engine would cap it)")
    return v


def _encode_str(v: str, where: str) -> str:
    """JSON text of ``v`` exactly as durable serialises rules (``ensure_ascii=False``)."""
    enc: str = _json_str(v)
    size = len(enc) - 2
    if not enc.isascii():
        try:
            size = len(enc.encode("utf-8")) - 2
        except UnicodeEncodeError:
            raise EngineValueError(f"{where}: str is not UTF-8 encodable") from None
    if size > MAX_STR_BYTES:
        raise EngineValueError(
            f"{where}: str of {size} bytes exceeds {MAX_STR_BYTES} (engine keeps 16-bit lengths)"
        )
    return enc


def _literal(v: Any, where: str) -> tuple[type, Any]:
    """Validate a rule literal or fact value → (int | str, normalised value)."""
    t = type(v)
    if t is int:
        return int, _check_int(v, where)
    if t is str:
        return str, v
    if isinstance(v, bool):
        raise EngineValueError(f"{where}: bool is not allowed (send 1/0)")
    if isinstance(v, int):
        return int, _check_int(int(v), where)
    if isinstance(v, str):
        return str, str.__str__(v)
    raise EngineValueError(f"{where}: {t.__name__} is not allowed (only int in int64 or str)")


def _fnv1a(name: str) -> int:
    h = 0x811C9DC5
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------
class Leaf(NamedTuple):
    """``field op value``; op is ``$eq`` or one of ``_COMPARISONS``."""

    field: str
    op: str
    value: int | str


class Node(NamedTuple):
    """``$and`` / ``$or`` over children (kind ``"and"`` / ``"or"``)."""

    kind: str
    children: tuple[Any, ...]


_TRUE: Final = Node("true", ())
Expr = Leaf | Node


def _expr_error(rid: str, msg: str) -> EngineError:
    return EngineError(f"rule {rid!r}: {msg}", "engine_expr")


def _parse(x: Any, rid: str, types: dict[str, type]) -> Expr:
    """Parse one condition (spec grammar) into Leaf/Node; record field types."""
    if x is True:
        return _TRUE
    if not isinstance(x, Mapping):
        raise _expr_error(rid, f"condition must be a mapping or True, got {type(x).__name__}")
    if len(x) != 1:
        raise _expr_error(rid, f"condition must have exactly one key, got {sorted(map(str, x))}")
    ((k, v),) = x.items()
    if not isinstance(k, str):
        raise _expr_error(rid, f"condition key must be str, got {k!r}")
    if k in ("$and", "$or"):
        if not isinstance(v, list | tuple) or not v:
            raise _expr_error(rid, f"{k} needs a non-empty list")
        kids = tuple(_parse(c, rid, types) for c in v)
        return Node("and" if k == "$and" else "or", kids)
    if k in _ARITHMETIC:
        raise _expr_error(rid, f"arithmetic {k} is not allowed (compute it in Python)")
    if k in _EXISTENCE:
        raise _expr_error(rid, f"{k} is not allowed (it can match the engine's state object)")
    if k in _COMPARISONS:
        if not isinstance(v, Mapping) or len(v) != 1:
            raise _expr_error(rid, f"{k} needs exactly one {{field: value}}")
        ((f, val),) = v.items()
        return _leaf(f, k, val, rid, types)
    if k.startswith("$"):
        raise _expr_error(rid, f"operator {k} is not supported")
    return _leaf(k, "$eq", v, rid, types)


def _leaf(f: Any, op: str, val: Any, rid: str, types: dict[str, type]) -> Leaf:
    _check_field(f, rid)
    if isinstance(val, Mapping):
        keys = set(map(str, val))
        if keys & _ARITHMETIC:
            raise _expr_error(rid, f"arithmetic {sorted(keys & _ARITHMETIC)} is not allowed")
        raise _expr_error(rid, f"field {f!r}: value must be an int or str literal")
    t, val = _literal(val, f"rule {rid!r} field {f!r}")
    if t is str:
        _encode_str(val, f"rule {rid!r} field {f!r}")
    known = types.setdefault(f, t)
    if known is not t:
        raise EngineError(
            f"field {f!r} is compared with both {known.__name__} and {t.__name__} literals "
            "(the engine compares strings with numbers wrongly)",
            "engine_type",
        )
    return Leaf(f, op, val)


def _check_field(f: Any, rid: str) -> None:
    if not isinstance(f, str) or not _FIELD_RE.fullmatch(f):
        raise EngineError(f"rule {rid!r}: field {f!r} is not a plain identifier", "engine_field")
    if f in _RESERVED or f.startswith("cg__"):
        raise EngineError(f"rule {rid!r}: field name {f!r} is reserved", "engine_field")


def _normalise(x: Expr) -> Expr:
    """Flatten nested same-kind nodes, drop/propagate True, unwrap single children."""
    if isinstance(x, Leaf) or x is _TRUE:
        return x
    kids: list[Expr] = []
    for c in map(_normalise, x.children):
        if c is _TRUE:
            if x.kind == "or":
                return _TRUE
            continue
        if isinstance(c, Node) and c.kind == x.kind:
            kids.extend(c.children)
        else:
            kids.append(c)
    if not kids:
        return _TRUE
    if len(kids) == 1:
        return kids[0]
    return Node(x.kind, tuple(kids))


def _paths(x: Expr) -> int:
    """Upper bound of the alpha-network paths that can be live at once for one fact (this
    bounds the stack depth): leaf 1, ``$and`` the product, ``$or`` the sum, except that
    equalities on one field inside an ``$or`` count once (at most one of them is true)."""
    if isinstance(x, Leaf):
        return 1
    if x.kind == "and":
        n = 1
        for c in x.children:
            n *= _paths(c)
        return n
    eq_fields = {c.field for c in x.children if isinstance(c, Leaf) and c.op == "$eq"}
    rest = (c for c in x.children if not (isinstance(c, Leaf) and c.op == "$eq"))
    return len(eq_fields) + sum(map(_paths, rest))


def _nodes(x: Expr) -> int:
    """Alpha nodes the condition creates at most (leaves + one forward node per ``$or``);
    bounds the children of any node (engine limit 511)."""
    if isinstance(x, Leaf):
        return 1
    return (x.kind == "or") + sum(map(_nodes, x.children))


def _ops(x: Expr) -> int:
    return 0 if isinstance(x, Leaf) else 1 + sum(_ops(c) for c in x.children)


def _fields(x: Expr, out: set[str]) -> set[str]:
    if isinstance(x, Leaf):
        out.add(x.field)
    else:
        for c in x.children:
            _fields(c, out)
    return out


def _fits(x: Expr) -> bool:
    wrapper = 0 if isinstance(x, Node) and x.kind == "and" else 1
    return (
        _paths(x) <= ATOM_PATH_BUDGET
        and _nodes(x) <= ATOM_NODE_BUDGET
        and _ops(x) + wrapper <= ATOM_OP_BUDGET
        and len(_fields(x, set())) <= ATOM_FIELD_BUDGET
    )


def _to_json(x: Expr) -> Any:
    if isinstance(x, Leaf):
        return {x.field: x.value} if x.op == "$eq" else {x.op: {x.field: x.value}}
    return {"$and" if x.kind == "and" else "$or": [_to_json(c) for c in x.children]}


def _guarded(x: Expr) -> dict[str, Any]:
    kids = x.children if isinstance(x, Node) and x.kind == "and" else (x,)
    return {"$and": [{GUARD: 1}, *(_to_json(c) for c in kids)]}


# A formula combines atoms (internal rules) in Python: ("atom", name) | ("and"|"or", parts)
Formula = tuple[str, Any]


class _Group:
    """Children of one and/or node packed into one atom, with its measures kept
    incrementally (so packing a 5,000-way ``$or`` stays linear)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.items: list[Expr] = []
        self.paths = 1 if kind == "and" else 0
        self.nodes = 1 if kind == "or" else 0
        self.ops = 1 if kind == "and" else 2  # the node itself (+ guard wrapper for or)
        self.eq_fields: set[str] = set()
        self.fields: set[str] = set()

    def _measure(self, c: Expr) -> tuple[int, int, int, set[str], str | None]:
        eq = c.field if isinstance(c, Leaf) and c.op == "$eq" and self.kind == "or" else None
        if self.kind == "and":
            paths = self.paths * _paths(c)
        elif eq is not None:
            paths = self.paths + (eq not in self.eq_fields)
        else:
            paths = self.paths + _paths(c)
        return paths, self.nodes + _nodes(c), self.ops + _ops(c), _fields(c, set()), eq

    def accepts(self, c: Expr) -> bool:
        paths, nodes, ops, fields, _ = self._measure(c)
        return (
            paths <= ATOM_PATH_BUDGET
            and nodes <= ATOM_NODE_BUDGET
            and ops <= ATOM_OP_BUDGET
            and len(self.fields | fields) <= ATOM_FIELD_BUDGET
        )

    def add(self, c: Expr) -> None:
        self.paths, self.nodes, self.ops, fields, eq = self._measure(c)
        self.fields |= fields
        if eq is not None:
            self.eq_fields.add(eq)
        self.items.append(c)

    def piece(self) -> Expr:
        return self.items[0] if len(self.items) == 1 else Node(self.kind, tuple(self.items))


def _decompose(x: Expr, new_atom: Callable[[Expr], str]) -> Formula:
    """Split ``x`` at and/or nodes until every piece fits one internal rule; the pieces
    are recombined in Python by the returned formula."""
    if _fits(x):
        return ("atom", new_atom(x))
    assert isinstance(x, Node)  # a Leaf always fits
    parts: list[Formula] = []
    group = _Group(x.kind)
    for c in x.children:
        if not _fits(c):
            parts.append(_decompose(c, new_atom))
            continue
        if group.items and not group.accepts(c):
            parts.append(("atom", new_atom(group.piece())))
            group = _Group(x.kind)
        group.add(c)
    if group.items:
        parts.append(("atom", new_atom(group.piece())))
    return (x.kind, tuple(parts))


def _holds(f: Formula, fired: set[str]) -> bool:
    kind, arg = f
    if kind == "atom":
        return arg in fired
    if kind == "and":
        return all(_holds(p, fired) for p in arg)
    return any(_holds(p, fired) for p in arg)


def _atoms_of(f: Formula) -> Iterable[str]:
    if f[0] == "atom":
        yield f[1]
    else:
        for p in f[1]:
            yield from _atoms_of(p)


# ---------------------------------------------------------------------------------------
# Compiled plan and handle
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Chunk:
    """One internal durable ruleset: ``fields`` it reads, its ``definition`` (JSON-able)."""

    fields: tuple[str, ...]
    definition: dict[str, Any]
    paths: int


@dataclass(slots=True)
class _Plan:
    """Everything ``match`` needs, computed once at ``register``."""

    types: dict[str, type]  # every field the rules read → int | str
    prefixes: dict[str, str]  # engine field → '"name":'
    synth: tuple[tuple[str, str, Callable[[Any, Any], bool], str], ...]  # name, src, cmp, lit
    chunks: tuple[_Chunk, ...]
    simple: dict[str, str]  # atom → rule id (rule is exactly that atom)
    complex_of: dict[str, tuple[int, ...]]  # atom → indexes into ``complex``
    complex: tuple[tuple[str, Formula], ...]  # (rule id, formula)
    always: frozenset[str]  # rule ids whose condition is True
    rule_count: int


class RulesetHandle:
    """Opaque handle returned by ``DurableRulesEngine.register``.

    Read-only diagnostics: ``key``, ``chunk_count``, ``rule_count``, ``released``."""

    __slots__ = ("key", "_digest", "_plan", "_rulesets", "_runs", "_released", "_owner")

    def __init__(self, key: str, digest: str, plan: _Plan, owner: DurableRulesEngine):
        self.key = key
        self._digest = digest
        self._plan: _Plan | None = plan
        self._rulesets: list[tuple[str, _durable.Ruleset]] = []  # (name, durable Ruleset)
        self._runs: tuple[tuple[tuple[str, ...], int], ...] = ()  # (chunk fields, C handle)
        self._released = False
        self._owner = owner

    @property
    def chunk_count(self) -> int:
        """Internal durable rulesets behind this handle (0 once released)."""
        return len(self._rulesets)

    @property
    def rule_count(self) -> int:
        return self._plan.rule_count if self._plan else 0

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else f"{self.chunk_count} chunks"
        return f"<RulesetHandle {self.key} {self.rule_count} rules, {state}>"


def _compile(rules: Mapping[str, Any]) -> tuple[_Plan, str]:
    """Validate and compile ``rules`` → (plan, digest). Raises ``EngineError``."""
    if not isinstance(rules, Mapping):
        raise EngineError("rules must be a mapping of rule id → condition", "engine_expr")
    types: dict[str, type] = {}
    parsed: dict[str, Expr] = {}
    for rid, cond in rules.items():
        if not isinstance(rid, str):
            raise EngineError(f"rule id {rid!r} must be a str", "engine_expr")
        try:
            parsed[rid] = _normalise(_parse(cond, rid, types))
        except RecursionError:
            raise _expr_error(rid, "condition nested too deeply") from None
    digest = hashlib.sha256(repr(sorted(parsed.items())).encode()).hexdigest()

    synth: dict[tuple[str, str, str], str] = {}

    def lower(x: Expr) -> Expr:  # str orderings → synthetic 0/1 fields
        if isinstance(x, Leaf):
            if x.op in _ORDERINGS and isinstance(x.value, str):
                name = synth.setdefault((x.field, x.op, x.value), f"{_SYNTH_PREFIX}{len(synth)}")
                return Leaf(name, "$eq", 1)
            return x
        return x if x is _TRUE else Node(x.kind, tuple(map(lower, x.children)))

    atoms: list[tuple[str, Expr]] = []

    def new_atom(x: Expr) -> str:
        name = f"a{len(atoms)}"
        atoms.append((name, x))
        return name

    simple: dict[str, str] = {}
    complex_: list[tuple[str, Formula]] = []
    always: set[str] = set()
    for rid, x in parsed.items():
        if x is _TRUE:
            always.add(rid)
            continue
        f = _decompose(lower(x), new_atom)
        if f[0] == "atom":
            simple[f[1]] = rid
        else:
            complex_.append((rid, f))
    complex_of: dict[str, list[int]] = {}
    for i, (_, f) in enumerate(complex_):
        for a in set(_atoms_of(f)):
            complex_of.setdefault(a, []).append(i)

    engine_fields = {f for _, x in atoms for f in _fields(x, set())}
    _check_hashes(engine_fields)
    plan = _Plan(
        types=types,
        prefixes={f: f"{_json_str(f)}:" for f in engine_fields},
        synth=tuple((n, src, _ORDERINGS[op], lit) for (src, op, lit), n in synth.items()),
        chunks=_pack(atoms),
        simple=simple,
        complex_of={a: tuple(ix) for a, ix in complex_of.items()},
        complex=tuple(complex_),
        always=frozenset(always),
        rule_count=len(parsed),
    )
    return plan, digest


def _check_hashes(fields: Iterable[str]) -> None:
    seen: dict[int, str] = {_fnv1a(n): n for n in ("sid", "id", GUARD, PRIMER)}
    for f in sorted(fields):
        other = seen.setdefault(_fnv1a(f), f)
        if other != f:
            raise EngineError(
                f"fields {other!r} and {f!r} have the same 32-bit FNV-1a hash; the engine "
                "would confuse them: rename one",
                "engine_field",
            )


def _pack(atoms: list[tuple[str, Expr]]) -> tuple[_Chunk, ...]:
    """Greedy, in order: Σ paths + 1 ≤ CHUNK_PATH_BUDGET, Σ nodes + 1 ≤ CHUNK_NODE_BUDGET,
    fields ≤ CHUNK_FIELD_BUDGET."""
    chunks: list[_Chunk] = []
    defs: dict[str, Any] = {}
    fields: set[str] = set()
    paths = nodes = 1

    def close() -> None:
        if defs:
            defs[CATCH_ALL] = {"all": [{"m": {GUARD: 1}}]}
            chunks.append(_Chunk(tuple(sorted(fields)), dict(defs), paths))

    for name, x in atoms:
        p, n, fs = _paths(x), _nodes(x), _fields(x, set())
        if defs and (
            paths + p > CHUNK_PATH_BUDGET
            or nodes + n > CHUNK_NODE_BUDGET
            or len(fields | fs) > CHUNK_FIELD_BUDGET
        ):
            close()
            defs, fields, paths, nodes = {}, set(), 1, 1
        defs[name] = {"all": [{"m": _guarded(x)}]}
        fields |= fs
        paths += p
        nodes += n
    close()
    return tuple(chunks)


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------
class DurableRulesEngine:
    """Adapter over durable_rules (see module docstring).

    ``action_hook``: test hook called with the internal rule name of every action, on the
    caller's thread, inside ``match``; if it raises, ``match`` raises ``EngineRuleError``
    (after cleaning the session). Production code uses ``get_engine()`` (no hook)."""

    def __init__(self, *, action_hook: Callable[[str], None] | None = None):
        self._host = _the_host()
        self._handles: dict[str, RulesetHandle] = {}
        self._action_hook = action_hook

    @property
    def engine_version(self) -> str:
        """``"durable_rules <version>"`` of the installed durable-rules distribution."""
        return _ENGINE_VERSION

    # -- register / release ------------------------------------------------------------
    def register(self, key: str, rules: Mapping[str, Any]) -> RulesetHandle:
        """Compile ``rules`` (rule id → condition) into internal rulesets under ``key``.

        ``key``: ``[A-Za-z0-9_]{1,120}``, unique per compiled content; the same key again
        returns the existing handle if the rules are the same, else ``engine_key``.
        Raises ``EngineError`` (codes engine_key/expr/type/field), ``EngineValueError``,
        ``EngineRuleError`` (the engine refused a ruleset)."""
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise EngineError(f"key {key!r} must match [A-Za-z0-9_]{{1,120}}", "engine_key")
        plan, digest = _compile(rules)
        with _LOCK:
            existing = self._handles.get(key)
            if existing is not None:
                if existing._digest != digest:
                    raise EngineError(
                        f"key {key!r} is already registered with different rules", "engine_key"
                    )
                return existing
            handle = RulesetHandle(key, digest, plan, self)
            try:
                for chunk in plan.chunks:
                    handle._rulesets.append(self._create(key, chunk))
            except BaseException:
                self._release_locked(handle)
                raise
            handle._runs = tuple(
                (chunk.fields, rs._handle)
                for chunk, (_, rs) in zip(plan.chunks, handle._rulesets, strict=True)
            )
            self._handles[key] = handle
            return handle

    def _create(self, key: str, chunk: _Chunk) -> tuple[str, _durable.Ruleset]:
        name = f"{key}__{next(_ruleset_names)}"
        definition = {rule: {**spec, "run": _never_runs} for rule, spec in chunk.definition.items()}
        try:
            self._host.register_rulesets({name: definition})
        except Exception as exc:
            raise EngineRuleError(f"durable_rules refused a ruleset for {key!r}: {exc}") from exc
        return name, self._host.get_ruleset(name)

    def release(self, handle: RulesetHandle) -> None:
        """Free ``handle``: ``delete_ruleset`` on every chunk, drop all references.
        Idempotent; ``match`` on it afterwards raises ``engine_released``."""
        with _LOCK:
            self._release_locked(handle)

    def _release_locked(self, handle: RulesetHandle) -> None:
        owner = handle._owner
        if owner._handles.get(handle.key) is handle:
            del owner._handles[handle.key]
        host = self._host
        for name, rs in handle._rulesets:
            host._ruleset_directory.pop(name, None)
            try:
                host._ruleset_list.remove(rs)
            except ValueError:
                pass
            try:
                _dre.delete_ruleset(rs._handle)
            except _dre.error:  # pragma: no cover - handle already gone
                pass
        handle._rulesets = []
        handle._runs = ()
        handle._plan = None
        handle._released = True

    # -- match -------------------------------------------------------------------------
    def match(self, handle: RulesetHandle, fact: Mapping[str, int | str]) -> frozenset[str]:
        """Rule ids whose condition is true for ``fact`` (field → int | str).

        Raises ``EngineValueError`` (bad value or type), ``EngineError`` (``engine_released``),
        ``EngineRuleError`` (engine error; never partial results)."""
        plan = handle._plan
        if plan is None:
            raise EngineError(f"handle {handle.key!r} was released", "engine_released")
        frags = self._encode(plan, fact)
        fired: set[str] = set()
        with _LOCK:
            if handle._released:
                raise EngineError(f"handle {handle.key!r} was released", "engine_released")
            sid = str(next(_sids))
            tail = f',"{GUARD}":1,"sid":"{sid}"}}'
            for fields, h in handle._runs:
                parts = [frags[f] for f in fields if f in frags]
                if parts:
                    self._run_chunk(h, "{" + ",".join(parts) + tail, sid, fired)
        return self._resolve(plan, fired)

    @staticmethod
    def _encode(plan: _Plan, fact: Mapping[str, Any]) -> dict[str, str]:
        """Validate every value; JSON fragment ``"name":value`` per engine field."""
        if not isinstance(fact, Mapping):
            raise EngineValueError(f"fact must be a mapping, got {type(fact).__name__}")
        types, prefixes = plan.types, plan.prefixes
        frags: dict[str, str] = {}
        for name, v in fact.items():
            t = type(v)
            if t is int:
                if v < INT64_MIN or v > INT64_MAX:
                    _check_int(v, f"fact field {name!r}")
            elif t is not str:
                t, v = _literal(v, f"fact field {name!r}")
            want = types.get(name)
            if want is None:
                continue
            if want is not t:
                raise EngineValueError(
                    f"fact field {name!r}: {t.__name__} given, the rules compare it as "
                    f"{want.__name__}"
                )
            pre = prefixes.get(name)
            if pre is None:  # read only through a synthetic ordering field
                continue
            if t is int:
                frags[name] = pre + int.__repr__(v)
            else:
                enc = _json_str(v)
                if len(enc) > MAX_STR_BYTES or not enc.isascii():
                    enc = _encode_str(v, f"fact field {name!r}")
                frags[name] = pre + enc
        for sname, src, cmp, lit in plan.synth:
            if src in fact:
                frags[sname] = prefixes[sname] + ("1" if cmp(fact[src], lit) else "0")
        return frags

    def _run_chunk(self, h: int, js: str, sid: str, fired: set[str]) -> None:
        """Assert one fact into one chunk, collect fired atoms, always clean the session.
        Caller holds ``_LOCK``."""
        acted = False
        failure: BaseException | None = None
        hook = self._action_hook
        try:
            code, st = _dre.assert_fact(h, js)
            if code != 0:
                raise _Fault(f"assert_fact returned status {code}")
            res = _dre.start_action_for_state(h, st)
            if res is None:
                raise _Fault("no action ran (the catch-all rule did not fire)")
            acted = True
            state_json, msg = res
            if '"exception"' in state_json:
                raise _Fault(f"session state carries an exception: {state_json[:200]}")
            seen_all = False
            while msg is not None:
                name = msg[2 : msg.index('"', 2)]
                if name == CATCH_ALL:
                    seen_all = True
                else:
                    fired.add(name)
                if hook is not None and failure is None:
                    try:
                        hook(name)
                    except Exception as exc:  # keep draining: the session must end clean
                        failure = exc
                msg = _dre.complete_and_start_action(h, st)
            if not seen_all:
                raise _Fault("the catch-all rule did not fire")
        except (_dre.error, MemoryError, _Fault) as exc:
            failure = failure or exc
        finally:
            _end_session(h, sid, acted)
        if failure is not None:
            raise EngineRuleError(f"durable_rules failed during match: {failure}") from failure

    @staticmethod
    def _resolve(plan: _Plan, fired: set[str]) -> frozenset[str]:
        out = set(plan.always)
        simple, complex_of = plan.simple, plan.complex_of
        candidates: set[int] = set()
        for a in fired:
            rid = simple.get(a)
            if rid is not None:
                out.add(rid)
            else:
                candidates.update(complex_of.get(a, ()))
        for i in candidates:
            rid, f = plan.complex[i]
            if _holds(f, fired):
                out.add(rid)
        return frozenset(out)


def _end_session(h: int, sid: str, acted: bool) -> None:
    """Delete session ``sid``. If no action ran in it, first assert a primer fact (fires only
    the catch-all) so ``delete_state`` never frees uninitialised memory. If even that
    fails the session is left alone (a bounded leak beats a segfault)."""
    if not acted:
        try:
            _, st = _dre.assert_fact(h, f'{{"{GUARD}":1,"{PRIMER}":1,"sid":"{sid}"}}')
            res = _dre.start_action_for_state(h, st)
            if res is None:
                return
            while res is not None:
                res = _dre.complete_and_start_action(h, st)
        except (_dre.error, MemoryError):
            return
    try:
        _dre.delete_state(h, sid)
    except _dre.error:
        pass


_ENGINE: DurableRulesEngine | None = None
_ENGINE_LOCK = threading.Lock()
try:
    _ENGINE_VERSION = f"durable_rules {metadata.version('durable-rules')}"
except metadata.PackageNotFoundError:  # pragma: no cover - durable imported from a checkout
    _ENGINE_VERSION = "durable_rules unknown"


def get_engine() -> DurableRulesEngine:
    """The process-wide ``DurableRulesEngine`` (created on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = DurableRulesEngine()
        return _ENGINE
