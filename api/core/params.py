"""Query-parameter helpers shared by the routes."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from api.core.problems import Problem

__all__ = ["single_query"]


def single_query(*names: str) -> Any:
    """A dependency refusing a query parameter of ``names`` sent more than once
    (``format=csv&format=jsonl``): 422 ``invalid_request``, each at ``query.<name>`` with
    code ``duplicate_parameter``, never the last one silently taken."""

    def check(request: Request) -> None:
        errors = [
            {
                "path": f"query.{name}",
                "code": "duplicate_parameter",
                "message": f"{name!r} is given {n} times ({', '.join(map(repr, values))}); "
                "give it once",
            }
            for name in names
            if (n := len(values := request.query_params.getlist(name))) > 1
        ]
        if errors:
            n = len(errors)
            raise Problem(
                "invalid_request",
                f"{n} query parameter{'s' if n != 1 else ''} given more than once",
                errors=errors,
            )

    return Depends(check)
