"""Anchors: the chain heads appended to a file outside the database (``creditgate audit
anchor --to PATH``) and the chains checked against them (``creditgate audit verify
--anchors PATH``). Pure file handling; the database side is ``Audit.chain_heads`` and
``Audit.records_at``.

One JSON line per chain and run: ``{anchored_at, business_unit, chain, head_seq, head_hash,
prev_hash, record_hash}``, where ``record_hash = sha256(prev_hash + canonical_json(line
without record_hash))`` (``api.core.chain.record_hash``) and ``prev_hash`` is the
``record_hash`` of the file's previous line (64 zeros for the first): the file is a hash
chain itself, so an edited, inserted or removed line is found. An empty chain is anchored
as ``head_seq`` 0 with the ``GENESIS`` hash. What the file cannot show by itself: lines cut
off at its end (keep it on append-only storage, on another machine)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from api.core import chain

__all__ = ["AnchorFileError", "append_anchors", "read_anchors"]

FIELDS = ("anchored_at", "business_unit", "chain", "head_seq", "head_hash", "prev_hash")


class AnchorFileError(ValueError):
    """The anchor file cannot be appended to (its last line is no complete anchor)."""


def _last_line(f: Any) -> bytes | None:
    """The last line of the binary file ``f`` (without its newline), None if empty; read
    backwards from the end, so a long file is not read whole."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return None
    f.seek(end - 1)
    if f.read(1) != b"\n":
        raise AnchorFileError(
            "its last line is incomplete (no newline at the end): an interrupted write or an "
            "edit; nothing was appended"
        )
    pos, tail = end - 1, b""  # tail: the bytes before the final newline
    while pos > 0:
        step = min(4096, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        nl = tail.rfind(b"\n")
        if nl >= 0:
            return tail[nl + 1 :]
    return tail


def append_anchors(path: Path, heads: list[Mapping[str, Any]], now: str, unit: str) -> list[dict]:
    """Append one anchor line per head ``{chain, head_seq, head_hash}`` to ``path``
    (created if missing; opened in append mode, locked against a concurrent run, fsynced).
    Each line chains onto the file's last line. Returns the lines written. Raises
    ``AnchorFileError`` if the last line is no anchor, ``OSError``."""
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        last = _last_line(f)
        if last is None:
            prev = chain.GENESIS
        else:
            try:
                prev = json.loads(last)["record_hash"]
                if not (isinstance(prev, str) and len(prev) == 64):
                    raise ValueError("no record_hash")
            except (ValueError, KeyError, TypeError) as e:
                raise AnchorFileError(
                    f"its last line is not an anchor ({type(e).__name__}); nothing was appended"
                ) from None
        written = []
        for h in heads:
            line = {
                "anchored_at": now,
                "business_unit": unit,
                "chain": h["chain"],
                "head_seq": h["head_seq"] or 0,
                "head_hash": h["head_hash"] or chain.GENESIS,
                "prev_hash": prev,
            }
            line["record_hash"] = prev = chain.record_hash(prev, line)
            written.append(line)
        f.write(b"".join(chain.canonical_json(w).encode() + b"\n" for w in written))
        f.flush()
        os.fsync(f.fileno())
    return written


def read_anchors(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """The lines of the anchor file in order, as ``(line number, anchor, problem)``:
    ``problem`` None for a line intact in itself and linked to the line before it; a
    readable line whose hash or link does not hold has both; a line that is no anchor has
    ``anchor`` None. Raises ``OSError``."""
    prev = chain.GENESIS
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"anchor file line {n}"
            if not raw.endswith(b"\n"):
                yield n, None, f"{where}: incomplete (no newline at the end of the file)"
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict) or set(rec) != {*FIELDS, "record_hash"}:
                    raise ValueError("not the fields of an anchor")
                if not (
                    isinstance(rec["head_seq"], int)
                    and not isinstance(rec["head_seq"], bool)
                    and rec["head_seq"] >= 0
                    and all(isinstance(rec[k], str) for k in FIELDS if k != "head_seq")
                    and isinstance(rec["record_hash"], str)
                ):
                    raise ValueError("a field of the wrong type")
            except ValueError as e:
                yield n, None, f"{where}: not an anchor ({str(e).splitlines()[0][:80]})"
                prev = None  # the next line cannot be linked to this one
                continue
            problem = None
            if chain.record_hash(rec["prev_hash"], rec) != rec["record_hash"]:
                problem = f"{where}: its record_hash does not match its contents (edited)"
            elif prev is not None and rec["prev_hash"] != prev:
                problem = (
                    f"{where}: prev_hash does not match the previous line's record_hash (a "
                    "line was removed, inserted or edited before it)"
                )
            prev = rec["record_hash"]
            yield n, rec, problem
