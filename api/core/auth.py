"""API keys and roles for the HTTP API.

A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are created
with ``creditgate keys create --role ROLE`` (printed once; the store keeps only the sha256
of the key), listed with ``creditgate keys list`` (id = the first 12 hex characters of the
sha256, role, name, created, revoked; never the key), revoked with ``creditgate keys revoke
KEY_ID`` and checked through the app's ``KeyCache`` (``api.keys.cache``: no database
transaction per request; a revocation is effective within one second in every worker): an
unknown or revoked key → 401.

Roles: ``order_entry`` (asks for decisions, reads customers, orders, decisions — masked
as for ``reviewer`` — and ledger events, posts the order documents: ``order_cancelled``,
``invoice_issued``), ``finance`` (posts what reduces receivables: ``payment_received``,
``credit_note``; an order-entry key cannot free credit; lists and exports the ledger
events), ``reviewer`` (reads decisions, orders and ledger events), ``compliance`` (reads
decisions, orders and ledger events, exports both logs, replays decisions, verifies the
audit chain),
``policy_owner`` (reads the policy in force), ``admin`` (everything, incl. customers).
Which role posts which ledger event: ``api.ledger.models.POSTED_BY``.

``require(*roles)`` is a FastAPI dependency: no or unknown key → 401 problem, a key whose
role is not listed (and is not ``admin``) → 403 problem. It returns the ``Caller``; it
reads only the request (no sub-dependencies: FastAPI would run each one per request). Both
ways of sending a key are declared in the OpenAPI document as security schemes
(``SECURITY_SCHEMES``: ``bearerAuth``, HTTP bearer; ``apiKeyHeader``, the ``X-API-Key``
header) on every route with a key (``api.core.docs.install_openapi``), so ``/docs`` has an
"Authorize" button and generated clients send the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBearer

from api.core.problems import INVALID_KEY_TITLE, Problem

__all__ = [
    "ADMIN",
    "KEY_ID_LENGTH",
    "ROLES",
    "SECURITY",
    "SECURITY_SCHEMES",
    "Caller",
    "key_from_request",
    "require",
]

ROLES = ("order_entry", "finance", "reviewer", "compliance", "policy_owner", "admin")
ADMIN = "admin"
KEY_ID_LENGTH = 12  # an API key's id: this many leading hex characters of its sha256

# For the OpenAPI document only; either scheme is enough (two security requirements, not
# one with both).
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="API key",
    description="`Authorization: Bearer <key>` (create keys with `creditgate keys create`)",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="`X-API-Key: <key>` (the same keys as the bearer scheme)",
)
#: the document's ``components.securitySchemes``
SECURITY_SCHEMES: dict[str, Any] = {
    scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    for scheme in (bearer_scheme, api_key_scheme)
}
#: the ``security`` of every route with a key
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]


@dataclass(frozen=True)
class Caller:
    """Who called: ``role`` and a short, non-secret ``key_id`` (for logs and the decision
    log's ``caller``)."""

    role: str
    key_id: str

    @property
    def name(self) -> str:
        return f"{self.role}:{self.key_id}"


def key_from_request(request: Request) -> str | None:
    """The API key of ``request``, from ``Authorization: Bearer`` or ``X-API-Key``. Both
    headers with DIFFERENT keys are ambiguous: refused (401), never one silently chosen (a
    junk key in one header must not ride on a valid one in the other). So are two
    ``Authorization`` or two ``X-API-Key`` headers with different values."""
    challenge = {"WWW-Authenticate": 'Bearer realm="creditgate"'}
    for name in ("Authorization", "X-API-Key"):
        values = {v.strip() for v in request.headers.getlist(name.lower())}
        if len(values) > 1:
            raise Problem(
                "unauthorized",
                f"{len(values)} '{name}' headers with different values; send one key",
                title=INVALID_KEY_TITLE,
                headers=challenge,
            )
    bearer = None
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearer = value.strip()
    header = (request.headers.get("x-api-key") or "").strip() or None
    if bearer is not None and header is not None and bearer != header:
        raise Problem(
            "unauthorized",
            "'Authorization: Bearer' and 'X-API-Key' carry different keys; send one key "
            "(in either header, or the same key in both)",
            title=INVALID_KEY_TITLE,
            headers=challenge,
        )
    return bearer or header


def _key_id(key: str) -> str:
    """The key's id: the first 12 hex characters of its sha256 (as ``creditgate keys list``
    shows it and ``creditgate keys revoke`` takes it)."""
    import hashlib

    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:KEY_ID_LENGTH]


def require(*roles: str) -> Any:
    """A dependency admitting callers whose key has one of ``roles`` (``admin`` always)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; expected {list(ROLES)}")
    allowed = frozenset(roles) | {ADMIN}

    async def dependency(request: Request) -> Caller:
        key = key_from_request(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="creditgate"'}
        if key is None:
            raise Problem(
                "unauthorized",
                "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers=challenge,
            )
        if len(key) > 200:
            raise Problem(
                "unauthorized",
                "the API key is not valid",
                title=INVALID_KEY_TITLE,
                headers=challenge,
            )
        role = await request.app.state.key_cache.role(key)
        if role is None:
            raise Problem(
                "unauthorized",
                "the API key is unknown or revoked",
                title=INVALID_KEY_TITLE,
                headers=challenge,
            )
        if role not in allowed:
            raise Problem(
                "forbidden",
                f"role {role!r} may not do this; it needs one of {sorted(allowed)}",
            )
        caller = Caller(role=role, key_id=_key_id(key))
        request.state.caller = caller
        return caller

    dependency.roles = tuple(sorted(allowed))  # type: ignore[attr-defined]
    return dependency
