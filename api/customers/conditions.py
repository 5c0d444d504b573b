"""Conditional writes of a customer record (RFC 9110 section 13): ``If-Match`` and
``If-None-Match`` parsed from the request (``Preconditions.of``) and evaluated against the
stored record's ETag INSIDE the write transaction, under the customer's row lock
(``Preconditions.check``): a compare-and-set, so two writers holding the same ETag can
never both succeed.

An ETag is strong (``"<32 hex digits>"``, ``api.customers.persistence.etag``); ``If-Match``
compares strongly (a weak ``W/"..."`` tag never matches), ``If-None-Match`` weakly.
``If-Match: *`` holds when the customer exists, ``If-None-Match: *`` when it does not."""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.customers.exceptions import PreconditionFailed

__all__ = ["Preconditions", "parse_etags"]

# An entity-tag (RFC 9110 8.8.3): optional W/, then a quoted string of etagc characters.
_ETAG = re.compile(r'\s*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def parse_etags(header: str, value: str) -> tuple[str, ...]:
    """``*`` → ``("*",)``; else the comma-separated entity-tags. A malformed value →
    ``ValueError`` naming ``header`` (never read as "no condition": fail closed)."""
    text = value.strip()
    if text == "*":
        return ("*",)
    tags: list[str] = []
    pos = 0
    while pos < len(text):
        m = _ETAG.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(
                f'{header}: expected * or a comma-separated list of entity-tags such as "abc" '
                "(as the ETag header shows them, quotes included)"
            )
        tags.append(m.group(1))
        pos = m.end()
    if not tags:
        raise ValueError(f"{header}: empty")
    return tuple(tags)


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


@dataclass(frozen=True)
class Preconditions:
    """The request's ``If-Match`` / ``If-None-Match`` (None: header not sent)."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None

    @classmethod
    def of(cls, if_match: str | None, if_none_match: str | None) -> Preconditions:
        """From the header values (raises ``ValueError`` for a malformed one)."""
        return cls(
            None if if_match is None else parse_etags("If-Match", if_match),
            None if if_none_match is None else parse_etags("If-None-Match", if_none_match),
        )

    @property
    def guards_replace(self) -> bool:
        """Whether a PUT may go ahead: it names the record the caller read (``If-Match``)
        or asks to create a new one (``If-None-Match: *``)."""
        return self.if_match is not None or self.if_none_match == ("*",)

    def check(self, current: str | None) -> None:
        """Evaluate against the stored record's ETag (None: no such customer); raises
        ``PreconditionFailed`` when a condition does not hold (RFC 9110 13.2.2 order)."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed("If-Match: there is no such customer (yet)")
            if self.if_match != ("*",) and not any(
                not t.startswith("W/") and t == current for t in self.if_match
            ):
                raise PreconditionFailed(
                    f"If-Match: the customer changed since it was read (its ETag is now "
                    f"{current}); read it again (GET), re-apply the change and send the new ETag"
                )
        if self.if_none_match is not None and current is not None:
            if self.if_none_match == ("*",):
                raise PreconditionFailed(
                    "If-None-Match: * : the customer exists already; read it (GET) and send "
                    "If-Match with its ETag to replace it, or PATCH the fields to change"
                )
            if any(_opaque(t) == _opaque(current) for t in self.if_none_match):
                raise PreconditionFailed(f"If-None-Match: the customer's ETag is {current}")
