"""Load a policy YAML file into plain Python values plus a table of source positions.

PyYAML composes the node tree (``yaml.compose`` with the safe loader, so no Python object
tags are honoured) and this module builds the values itself so that:

- every mapping key, sequence item and scalar keeps its line/column (``Document.pos``);
- decimal numbers stay exact (``Decimal``, never ``float``);
- duplicate keys, anchors/aliases to non-scalars and non-finite numbers are errors instead
  of being silently accepted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from rules.errors import PolicyError, PolicyErrors

MAX_POLICY_BYTES = 20 * 1024 * 1024

Path_ = tuple  # a location inside the document: keys and indexes from the root


@dataclass(frozen=True)
class Pos:
    """1-based line and column of a node; ``quoted`` tells whether a scalar was quoted, so
    that offsets inside expression strings can be mapped to columns."""

    line: int
    column: int
    quoted: bool = False
    block: bool = False


@dataclass
class Document:
    """A loaded YAML file: ``data`` (dicts, lists, str, int, Decimal, bool, None),
    ``pos`` mapping location tuples to ``Pos`` (the key's position for mapping entries, the
    value's position under the suffix ``("=",)``), ``sha256`` of the raw bytes and ``file``."""

    file: str
    data: Any
    pos: dict[tuple, Pos] = field(default_factory=dict)
    sha256: str = ""
    text: str = ""

    def at(self, path: tuple) -> Pos:
        """Best position for ``path``: the node itself, else its nearest ancestor."""
        p = tuple(path)
        while p:
            if p in self.pos:
                return self.pos[p]
            p = p[:-1]
        return self.pos.get((), Pos(1, 1))

    def value_at(self, path: tuple) -> Pos:
        """Position of the value at ``path`` (for expression offsets), else ``at(path)``."""
        return self.pos.get(tuple(path) + ("=",)) or self.at(path)

    def error(self, path: tuple, code: str, message: str, offset: int | None = None) -> PolicyError:
        """A ``PolicyError`` positioned at ``path``; ``offset`` is a 0-based character offset
        inside the scalar value (expressions), mapped to a column where the scalar is on one
        line."""
        if offset is None:
            p = self.at(path)
            return PolicyError(self.file, p.line, p.column, code, message)
        p = self.value_at(path)
        if p.block:
            return PolicyError(self.file, p.line + 1, 1, code, message)
        return PolicyError(
            self.file, p.line, p.column + offset + (1 if p.quoted else 0), code, message
        )


_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+(\.[0-9_]*)?$")
_PLAIN_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_PLAIN_DECIMAL = re.compile(r"^[-+]?([0-9][0-9_]*)?\.?[0-9_]*([eE][-+]?[0-9]+)?$")
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _short(value: object, limit: int = 60) -> str:
    """``repr`` of a value cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mark(node: yaml.Node, quoted: bool = False, block: bool = False) -> Pos:
    return Pos(node.start_mark.line + 1, node.start_mark.column + 1, quoted, block)


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.errors: list[PolicyError] = []
        self.seen: set[int] = set()

    def err(self, node: yaml.Node, code: str, message: str) -> None:
        m = _mark(node)
        self.errors.append(PolicyError(self.doc.file, m.line, m.column, code, message))

    def build(self, node: yaml.Node, path: tuple) -> Any:
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            # An alias makes the composer share one node; building it again for every
            # reference is how "billion laughs" files blow up. Policies need no aliases.
            if id(node) in self.seen:
                self.err(
                    node,
                    "unsupported_yaml",
                    "anchors and aliases (&name / *name) are not supported; write it out",
                )
                return None
            self.seen.add(id(node))
            default_tag = _MAP_TAG if isinstance(node, yaml.MappingNode) else _SEQ_TAG
            if node.tag != default_tag:
                self.err(
                    node,
                    "unsupported_yaml",
                    f"YAML tag {_short(node.tag)} is not supported in a policy",
                )
                return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.err(key_node, "invalid_key", "a key must be a plain name")
                    continue
                key = key_node.value
                if key == "<<":
                    self.err(
                        key_node,
                        "unsupported_yaml",
                        "merge keys (<<) are not supported; write the values out",
                    )
                    continue
                if key in out:
                    first = self.doc.pos[path + (key,)]
                    self.err(
                        key_node,
                        "duplicate_key",
                        f"{key!r} appears twice in this mapping (first at line {first.line})",
                    )
                    continue
                self.doc.pos[path + (key,)] = _mark(key_node)
                self.doc.pos[path + (key, "=")] = self._value_mark(value_node)
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.doc.pos[path + (i,)] = _mark(item)
                self.doc.pos[path + (i, "=")] = self._value_mark(item)
                items.append(self.build(item, path + (i,)))
            return items
        return self.scalar(node)

    @staticmethod
    def _value_mark(node: yaml.Node) -> Pos:
        style = getattr(node, "style", None)
        return _mark(node, quoted=style in ("'", '"'), block=style in ("|", ">"))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        value = node.value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            # YAML 1.2 booleans only: yes/no/on/off/y/n stay text, so `when: no` is an error
            # ("unknown field no") instead of silently disabling a rule.
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value
        if tag == "tag:yaml.org,2002:int":
            # Plain decimal integers only: YAML 1.1 reads 030 as octal 24, 0x10 as 16 and
            # 1:00:00 as 3600, which would silently change a policy's numbers.
            if not _PLAIN_INT.match(value):
                self.err(
                    node,
                    "invalid_number",
                    f"{_short(value)} is not a plain decimal "
                    "number (leading zeros, 0x, 0o, 0b and 1:00 forms are not allowed)",
                )
                return None
            return int(value.replace("_", ""))
        if tag == "tag:yaml.org,2002:float":
            dec = None
            if _PLAIN_DECIMAL.match(value):
                try:
                    dec = Decimal(value.replace("_", ""))
                except InvalidOperation:
                    dec = None
            if dec is None or not dec.is_finite() or abs(dec.adjusted()) > 30:
                self.err(
                    node,
                    "invalid_number",
                    f"{_short(value)} is not a finite decimal number of reasonable size",
                )
                return None
            return dec
        if tag == "tag:yaml.org,2002:str":
            if not node.style and _LEADING_ZERO.match(value):
                # 090 is not YAML 1.1 octal, so PyYAML makes it the text "090": refuse it
                # like 030 instead of letting a later step read it as 90.
                self.err(
                    node,
                    "invalid_number",
                    f"{_short(value)} is not a plain decimal number (leading zeros are not "
                    "allowed; quote it if it is text)",
                )
                return None
            return value
        self.err(node, "unsupported_yaml", f"YAML tag {tag!r} is not supported in a policy")
        return None


def _compose(text: str) -> yaml.Node | None:
    """Compose with LibYAML's safe loader when PyYAML has it (about 10x faster on large
    policies); on a syntax error, compose again with the pure-Python safe loader, whose
    error messages and positions are more precise."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def load_text(text: str, file: str = "<policy>") -> Document:
    """Parse YAML ``text`` into a ``Document``. Raises ``PolicyErrors`` (codes
    ``yaml_syntax``, ``duplicate_key``, ``invalid_number``, ``unsupported_yaml``,
    ``empty_policy``) with positions."""
    doc = Document(
        file=file, data=None, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest()
    )
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyErrors(
            [PolicyError(file, line, col, "yaml_syntax", str(exc.problem or exc))]
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - composer errors are marked
        raise PolicyErrors([PolicyError(file, 1, 1, "yaml_syntax", str(exc))]) from None
    if node is None:
        raise PolicyErrors([PolicyError(file, 1, 1, "empty_policy", "the file holds no policy")])
    doc.pos[()] = _mark(node)
    builder = _Builder(doc)
    doc.data = builder.build(node, ())
    if builder.errors:
        raise PolicyErrors(builder.errors)
    return doc


def load_file(path: str | Path) -> Document:
    """Read and parse a policy file (UTF-8, at most 20 MiB). The ``file`` shown in errors is
    the path as given. Raises ``PolicyErrors`` (``file_not_found``, ``not_utf8``, ``too_large``
    and the codes of ``load_text``)."""
    p = Path(path)
    name = str(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)  # never read more than the limit
    except FileNotFoundError:
        raise PolicyErrors(
            [PolicyError(name, 1, 1, "file_not_found", f"no such file: {name}")]
        ) from None
    except OSError as exc:
        raise PolicyErrors([PolicyError(name, 1, 1, "file_unreadable", str(exc))]) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyErrors(
            [PolicyError(name, 1, 1, "too_large", f"policy is over {MAX_POLICY_BYTES} bytes")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyErrors(
            [PolicyError(name, 1, 1, "not_utf8", f"file is not UTF-8: {exc}")]
        ) from None
    doc = load_text(text, name)
    doc.sha256 = hashlib.sha256(raw).hexdigest()
    return doc
