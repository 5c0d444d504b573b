"""Typed policy errors with stable codes and file positions.

Every problem found while loading or validating a policy is a ``PolicyError``; the
loader and validator collect them all and raise one ``PolicyErrors`` carrying the list.
``str(error)`` is the one-line form used by the command line and CI logs::

    policies.yaml:12:7: unknown_field: 'customer.dayspastdue' is not a declared input ...

Lines and columns are 1-based, as editors show them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class PolicyError:
    """One problem: ``file``, 1-based ``line`` and ``column``, stable ``code``, ``message``."""

    file: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code}: {self.message}"


class PolicyErrors(Exception):
    """Raised when a policy has one or more problems; ``errors`` lists all of them in file
    order."""

    def __init__(self, errors: list[PolicyError]):
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))
