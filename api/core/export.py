"""Streamed exports of a hash-chained log (the decision log, the ledger events): CSV or JSON
lines whose last line says whether the export is complete (``{"complete": true, "records":
N}``; CSV ``#complete,N``). A failure mid-stream ends it with ``complete: false`` and aborts
the connection, so a client sees a broken transfer as well. A record that cannot be read
in the first batch is a problem response before anything is sent (``opened``). CSV cells
never start a spreadsheet formula (``csv_cell``).

A domain gives its records as JSON-shaped dicts (masked where it masks), its CSV columns
and a function that adds its flat cells to a record (``stream``)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import StreamingResponse

from api.core import examples as ex
from api.core.database import UnreadableRecord
from api.core.problems import unreadable_problem

__all__ = ["csv_cell", "export_responses", "opened", "stream"]

log = logging.getLogger("creditgate.api")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP "CSV injection"): text
    starting with = + - @ or a tab/CR gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def opened(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``rows`` (read in batches by the store) with the first batch read now, before the
    answer starts: an unreadable record in it is a 500 ``unreadable_record`` problem, not a
    200 with a short body."""
    try:
        first = next(rows, None)
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    return itertools.chain([] if first is None else [first], rows)


def stream(
    records: Iterable[dict[str, Any]],
    *,
    format: str,  # noqa: A002 - the query parameter's name
    now: datetime,
    name: str,
    columns: Sequence[str],
    flat: Callable[[dict[str, Any]], dict[str, Any]],
) -> StreamingResponse:
    """The streamed export of ``records`` (JSON-shaped dicts, as shown) as ``format``
    (``csv`` or ``jsonl``). jsonl: each record as one JSON line. csv: ``columns``, each
    cell from the record updated with ``flat(record)`` (a dict cell as sorted JSON text, None
    as empty). ``now`` (the service clock) and ``name`` name the file
    (``<name>-<UTC stamp>.<format>``)."""
    written = 0

    def counted() -> Any:
        nonlocal written
        for row in records:
            yield row
            written += 1

    def failed(exc: Exception) -> str:
        log.error("export aborted after %d records: %s", written, exc, extra={"error": str(exc)})
        if isinstance(exc, UnreadableRecord):
            return str(exc)
        return f"internal error ({type(exc).__name__})"

    def jsonl() -> Any:
        try:
            for row in counted():
                yield json.dumps(row, ensure_ascii=False) + "\n"
        except Exception as exc:
            # Mid-stream: the status line is gone. Say so in the body, then abort the
            # connection (re-raise) so a client sees a broken transfer as well.
            end = {"complete": False, "records": written, "error": failed(exc)}
            yield json.dumps(end, ensure_ascii=False) + "\n"
            raise
        yield json.dumps({"complete": True, "records": written}) + "\n"

    def csv_lines() -> Any:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(columns)
        try:
            for row in counted():
                yield from csv_row(writer, buf, row)
        except Exception as exc:
            writer.writerow(["#incomplete", written, csv_cell(failed(exc))])
            yield buf.getvalue()
            raise
        writer.writerow(["#complete", written])
        yield buf.getvalue()

    def csv_row(writer: Any, buf: io.StringIO, row: dict[str, Any]) -> Any:
        data = dict(row)
        data.update(flat(row))
        writer.writerow(
            [
                csv_cell(
                    json.dumps(data[c], ensure_ascii=False, sort_keys=True)
                    if isinstance(data.get(c), dict)
                    else ("" if data.get(c) is None else data[c])
                )
                for c in columns
            ]
        )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()

    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        csv_lines() if format == "csv" else jsonl(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.{format}"'},
    )


def export_responses(what: str, jsonl_example: str, csv_example: str) -> dict[str, Any]:
    """The 200 response of an export route in the OpenAPI document: ``what`` (one record per
    line: ...), both media types with an example each."""
    return {
        "description": f"One record per line ({what}), then the completeness line",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "examples": ex.named(jsonl=jsonl_example),
            },
            "text/csv": {"schema": {"type": "string"}, "examples": ex.named(csv=csv_example)},
        },
    }
