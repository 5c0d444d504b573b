"""Orders: one order's status, figures and timeline (``GET /v1/orders/{order_id}``),
derived from the decision log and the ledger (``api.orders.lifecycle``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import to_json
from api.core.database import UnreadableRecord
from api.core.params import KNOWN_QUERY
from api.core.problems import Problem, unreadable_problem
from api.core.routing import caller, problems
from api.core.schemas import IDENTIFIER_PATTERN
from api.core.service import Service, service
from api.decisions.masking import masking_of
from api.orders.lifecycle import order_view
from api.orders.models import OrderView

router = APIRouter(tags=["orders"])
Svc = Annotated[Service, Depends(service)]

#: the ``{order_id}`` path parameter: the rest of the path, so an order id may hold ``/``
#: (``/v1/orders/SO/2026/1``); ``?``, ``#`` and ``%`` are percent-encoded (``%3F``, ``%23``,
#: ``%25``), as is ``/`` if the client prefers (``SO%2F2026%2F1``: the same order)
ORDER_ID = Path(
    max_length=200,
    description="The order id as the ERP sent it (`order_id` of POST /v1/decisions); it may "
    "contain `/`; percent-encode `?`, `#` and `%`",
    json_schema_extra={"pattern": IDENTIFIER_PATTERN, "minLength": 1},
    openapi_examples={"order": {"value": ex.ORDER_ID}},
)


@router.get(
    "/v1/orders/{order_id:path}",
    operation_id="getOrder",
    summary="One order: its status, figures and timeline",
    description="The order's status (`approved`, `referred`, `declined`, `cancelled`, "
    "`partly_invoiced`, `invoiced`; `closed` is reserved and not emitted yet), the approved, "
    "reserved and invoiced amounts, and every decision (new, repeat, amended, with the "
    "decision an amendment replaced) and ledger event of the order in one timeline, each "
    "with who did it. Derived from the decision log and the ledger in one read.",
    response_model=OrderView,
    responses={
        200: {
            "description": "The order",
            **ex.content(partly_invoiced=("Amended, repeated, partly invoiced", ex.ORDER_VIEW)),
        },
        **problems("GET", "/v1/orders/{order_id}"),
    },
)
def get_order(
    order_id: Annotated[str, ORDER_ID],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/orders/{order_id}")],
    _known: Annotated[None, KNOWN_QUERY],
) -> JSONResponse:
    try:
        rows = svc.store.orders.read(order_id)
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    if rows is None:
        raise Problem("unknown_order", f"no order {order_id!r}")
    # the approved amount is the order amount: masked when the policy in force or the one
    # that made the decision in force marks order.amount sensitive (README, "Masking")
    made = [d for d in rows.decisions if d["kind"] != "repeat"]
    sha = made[-1]["policy_sha256"] if made else svc.policy.sha256
    masked = "order_amount" in masking_of(svc)({"policy_sha256": sha}).fields
    return JSONResponse(to_json(order_view(rows, amount_masked=masked)))
