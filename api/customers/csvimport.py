"""The customer CSV import: all rows checked against the policy, every problem listed with
its line and column."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic_core import PydanticCustomError

from api.core.bodies import parse_currency, parse_customer_id, parse_money
from api.customers.exceptions import ImportErrors
from api.customers.models import (
    FactRefused,
    customer_currency_message,
    customer_fact_spec,
    customer_fact_value,
    reserved_customer_id,
)

IMPORT_BASE_COLUMNS = (
    "customer_id",
    "currency",
    "credit_limit",
    "open_receivables",
    "days_past_due",
)
IMPORT_REQUIRED = ("customer_id", "currency", "credit_limit")


# Booleans as JSON writes them and as spreadsheets (Excel, LibreOffice, Google Sheets) export
# them; any other spelling (True, yes, 1, Y) is refused rather than guessed.
CSV_BOOLEANS = {"true": True, "false": False, "TRUE": True, "FALSE": False}


def _csv_fact(spec: Any, cell: str, minor_units: int) -> Any:
    """A CSV cell as the JSON value the ledger stores for ``spec`` (raises InputErrors):
    the same check as a PUT body's fact (``customer_fact_value``); a boolean cell is
    exactly ``true``/``false`` or ``TRUE``/``FALSE``."""
    from engine.inputs import InputError, InputErrors

    raw: Any = cell
    if spec.type.kind == "bool":
        if cell not in CSV_BOOLEANS:
            raise InputErrors(
                [
                    InputError(
                        spec.path,
                        "invalid_type",
                        f"expected true or false (TRUE/FALSE as spreadsheets export them), "
                        f"got {cell[:40]!r}",
                    )
                ]
            )
        raw = CSV_BOOLEANS[cell]
    return customer_fact_value(spec, raw, minor_units)


def parse_customer_csv(data: bytes, policy: Any) -> list[dict[str, Any]]:
    """The rows of a customer import; raises ``ImportErrors`` listing every bad row
    (``{line, column, problem}``; line 1 is the header)."""
    import csv
    import io

    errors: list[dict[str, Any]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # e.object is the data after a BOM: the line is counted there, the offset in the file
        line = e.object[: e.start].count(b"\n") + 1
        offset = e.start + (len(data) - len(e.object))
        problem = (
            f"not UTF-8: byte 0x{e.object[e.start]:02x} at byte offset {offset} of the file; "
            "save the CSV as UTF-8"
        )
        raise ImportErrors([{"line": line, "column": "", "problem": problem}]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise ImportErrors([{"line": 1, "column": "", "problem": f"CSV: {e}"}]) from None
    if not header:
        raise ImportErrors([{"line": 1, "column": "", "problem": "empty file: no header row"}])
    header = [h.strip() for h in header]
    facts: dict[str, Any] = {}
    for name in header:
        if header.count(name) > 1:
            errors.append({"line": 1, "column": name, "problem": "duplicate column"})
        elif name in IMPORT_BASE_COLUMNS:
            continue
        elif name.startswith("customer."):
            try:
                facts[name] = customer_fact_spec(policy, name, "column")
            except FactRefused as e:
                errors.append({"line": 1, "column": name, "problem": str(e)})
        elif ";" in name and "customer_id" in name:
            # a European spreadsheet's export: the whole header read as one column
            errors.append({
                "line": 1,
                "column": name,
                "problem": "unknown column: the file looks separated by ';' — the import "
                "reads commas: save it as CSV UTF-8 (comma delimited)",
            })
        else:
            errors.append({"line": 1, "column": name, "problem": "unknown column"})
    for name in IMPORT_REQUIRED:
        if name not in header:
            errors.append({"line": 1, "column": name, "problem": "required column is missing"})
    if errors:
        raise ImportErrors(errors)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not c.strip() for c in record):
                continue  # blank lines are skipped
            if len(record) != len(header):
                errors.append(
                    {
                        "line": line,
                        "column": "",
                        "problem": f"{len(record)} cells, the header has {len(header)}",
                    }
                )
                continue
            cells = dict(zip(header, record, strict=True))
            row, bad = _import_row(cells, facts, policy, line)
            errors.extend(bad)
            cid = row.get("customer_id")
            if cid is not None:
                if cid in seen:
                    errors.append(
                        {
                            "line": line,
                            "column": "customer_id",
                            "problem": f"duplicate of line {seen[cid]}",
                        }
                    )
                else:
                    seen[cid] = line
            if not bad:
                rows.append(row)
    except csv.Error as e:
        errors.append({"line": reader.line_num, "column": "", "problem": f"CSV: {e}"})
    if errors:
        raise ImportErrors(errors)
    if not rows:
        raise ImportErrors([{"line": 1, "column": "", "problem": "no customer rows"}])
    return rows


def _import_row(
    cells: dict[str, str], facts: dict[str, Any], policy: Any, line: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from engine.inputs import InputErrors

    bad: list[dict[str, Any]] = []
    row: dict[str, Any] = {"line": line, "facts": {}}

    def check(column: str, fn: Callable[[str], Any]) -> None:
        try:
            row[column] = fn(cells.get(column, "").strip())
        except (PydanticCustomError, ValueError) as e:
            msg = e.message() if isinstance(e, PydanticCustomError) else str(e)
            bad.append({"line": line, "column": column, "problem": msg})

    def money(cell: str) -> Decimal | None:
        if not cell:
            return None  # left empty: kept (a new customer starts at 0)
        value = parse_money(cell)
        if value < 0:
            raise ValueError("must not be negative")
        if value != round(value, policy.minor_units):
            raise ValueError(f"more than {policy.minor_units} decimals")
        return value.quantize(Decimal(1).scaleb(-policy.minor_units))

    def currency(cell: str) -> str:
        code = parse_currency(cell)
        if code != policy.currency:
            raise ValueError(customer_currency_message(policy, code))
        return code

    def days(cell: str) -> int | None:
        if not cell:
            return None  # left empty: kept (a new customer starts at 0)
        if not cell.isdigit() or len(cell) > 6:
            raise ValueError("a whole number of days (0 or more)")
        return int(cell)

    def required_money(cell: str) -> Decimal:
        value = money(cell)
        if value is None:
            raise ValueError("required")
        return value

    try:  # not stripped: " B5 " is refused, never silently another id
        row["customer_id"] = reserved_customer_id(parse_customer_id(cells.get("customer_id", "")))
    except PydanticCustomError as e:
        bad.append({"line": line, "column": "customer_id", "problem": e.message()})
    check("currency", currency)
    check("credit_limit", required_money)
    check("open_receivables", money)
    check("days_past_due", days)
    for name, spec in facts.items():
        cell = cells.get(name, "")
        if cell == "":
            continue  # left empty: the stored fact is kept (none: the policy default)
        try:
            row["facts"][name.removeprefix("customer.")] = _csv_fact(spec, cell, policy.minor_units)
        except InputErrors as e:
            bad.append({"line": line, "column": name, "problem": e.errors[0].message})
    return row, bad
