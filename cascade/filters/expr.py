"""Filter expressions: a small tree of comparisons joined by AND / OR / NOT.

Missing values follow SQL's rule. A comparison (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``,
``IN``, ``NOT IN``) with a document that has no value for the field is neither true nor false
but *unknown*; ``NOT`` of unknown is unknown; ``AND`` is false when any side is false and
``OR`` true when any side is true (Kleene's logic); a document matches only when the whole
filter is true. So ``year != 2000``, ``year NOT IN (2000)`` and ``NOT (year = 2000)`` all
leave out documents without a year, and so does ``NOT (year >= 2020 OR lang = "en")`` for a
German document without one. ``year IS NULL`` (``F("year").missing()``) matches exactly the
documents without a year and ``year IS NOT NULL`` the others; these are never unknown. The
same rule decides what ``Index.delete(where=...)`` deletes. Keyword fields compare as strings
(ranges use string order), int/float fields as numbers, date fields as calendar days.

``&`` and ``|`` chains stay flat (``a & b & c`` is one AND of three), so combining thousands
of conditions in a loop is fine; expressions nested deeper than :data:`MAX_DEPTH` (AND inside
OR inside AND ...) are a :class:`CascadeError`.

>>> str((F("year") >= 2020) & F("lang").isin(["en", "de"]) & ~(F("status") == "draft"))
'year >= 2020 AND lang IN ("en", "de") AND NOT status = "draft"'
>>> str(F("year").missing() | (F("year") != 2000))
'year IS NULL OR year != 2000'
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from cascade.core.errors import CascadeError
from cascade.filters.columns import Column, coerce, parse_date

OPS = ("=", "!=", "<", "<=", ">", ">=")
MAX_DEPTH = 100  # AND / OR / NOT nested deeper than this are an error (evaluation recurses)
ColumnFn = Callable[[str], Column]
Truth = tuple[np.ndarray, np.ndarray]  # (true, false) masks; a document in neither is unknown


class Expr:
    """Base of filter expressions; combine with ``&``, ``|`` and ``~``."""

    depth = 1  # levels of AND / OR / NOT, leaves included

    def __and__(self, other: "Expr") -> "Expr":
        return And((self, _expr(other)))

    def __or__(self, other: "Expr") -> "Expr":
        return Or((self, _expr(other)))

    def __invert__(self) -> "Expr":
        return Not(self)

    def __bool__(self) -> bool:
        raise CascadeError("combine filters with &, | and ~ (not and/or/not)")

    def mask(self, column: ColumnFn, n: int) -> np.ndarray:
        """bool[n]: which of a segment's n documents match (``column(name)`` gives its columns)."""
        return self.truth(column, n)[0]

    def truth(self, column: ColumnFn, n: int) -> Truth:
        """(true, false): bool[n] masks of the documents for which this is true, and false; a
        document in neither has a missing value that makes it unknown (see the module doc)."""
        raise NotImplementedError

    def bind(self, spec: Mapping[str, str]) -> "Expr":
        """A copy with literals converted for the declared field types; CascadeError when they do not fit."""
        raise NotImplementedError

    def text(self, prec: int = 0) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"Filter({self.text()!r})"


def _expr(value: Any) -> Expr:
    if not isinstance(value, Expr):
        raise CascadeError(f"cannot combine a filter with {type(value).__name__} {value!r}")
    return value


def _literal(value: Any) -> str:
    if isinstance(value, dt.date):
        value = value.isoformat()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _field_kind(spec: Mapping[str, str], field: str) -> str:
    kind = spec.get(field)
    if kind is None:
        import difflib

        close = difflib.get_close_matches(field, list(spec), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        declared = ", ".join(sorted(spec)) or "none (declare them with filter_fields= when building)"
        raise CascadeError(f"unknown filter field {field!r}{hint} (filter fields of this index: {declared})")
    return kind


def bind_value(kind: str, field: str, value: Any) -> Any:
    """A literal as compared with a column of ``kind``."""
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CascadeError(f"filter field {field!r} is {kind}; compare it with a number, not {value!r}")
        if isinstance(value, int) and not -(2**63) < value < 2**63:
            return float(value)
        return value
    if kind == "keyword" and not isinstance(value, str):
        raise CascadeError(f"filter field {field!r} is a keyword; compare it with a quoted string, not {value!r}")
    if kind == "date" and not isinstance(value, str | dt.date):
        raise CascadeError(f"filter field {field!r} is a date; compare it with a quoted date, not {value!r}")
    try:
        value = coerce(kind, value)
    except CascadeError as err:
        raise CascadeError(f"filter field {field!r} ({kind}): {err}") from None
    return dt.date(1970, 1, 1) + dt.timedelta(days=value) if kind == "date" else value


def _nested(items: tuple[Expr, ...]) -> int:
    depth = 1 + max((e.depth for e in items), default=0)
    if depth > MAX_DEPTH:
        raise CascadeError(f"filter nested more than {MAX_DEPTH} levels deep (AND inside OR inside ...); "
                           "write it flatter, e.g. with IN (...)")
    return depth


def _known(hit: np.ndarray, present: np.ndarray) -> Truth:
    """A comparison's (true, false) masks: ``hit`` where the value is present; unknown elsewhere."""
    hit = np.asarray(hit & present, dtype=bool)
    return hit, present & ~hit


def _column_value(value: Any) -> Any:
    """A bound literal as stored in a column (dates as days since 1970-01-01)."""
    return parse_date(value) if isinstance(value, dt.date) else value


@dataclass(frozen=True, eq=False)
class Compare(Expr):
    field: str
    op: str
    value: Any

    def bind(self, spec: Mapping[str, str]) -> Expr:
        return Compare(self.field, self.op, bind_value(_field_kind(spec, self.field), self.field, self.value))

    def truth(self, column: ColumnFn, n: int) -> Truth:
        col = column(self.field)
        present = col.present()
        if col.kind == "keyword":
            return _known(_keyword_compare(col, self.op, self.value), present)
        vals, v = col.values, _column_value(self.value)
        if isinstance(v, float) and math.isnan(v):
            return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)  # NaN compares as unknown
        hit = {"=": vals == v, "!=": vals != v, "<": vals < v, "<=": vals <= v, ">": vals > v,
               ">=": vals >= v}[self.op]
        return _known(hit, present)

    def text(self, prec: int = 0) -> str:
        return f"{self.field} {self.op} {_literal(self.value)}"


def _keyword_compare(col: Column, op: str, value: str) -> np.ndarray:
    keys = col.keys or []
    codes = col.values
    lo, hi = bisect.bisect_left(keys, value), bisect.bisect_right(keys, value)
    if op == "=":
        return codes == lo if hi > lo else np.zeros(len(codes), dtype=bool)
    if op == "!=":
        return (codes >= 0) & (codes != lo) if hi > lo else codes >= 0
    if op == "<":
        return (codes >= 0) & (codes < lo)
    if op == "<=":
        return (codes >= 0) & (codes < hi)
    if op == ">":
        return codes >= hi
    return codes >= lo


@dataclass(frozen=True, eq=False)
class In(Expr):
    field: str
    values: tuple[Any, ...]

    def bind(self, spec: Mapping[str, str]) -> Expr:
        kind = _field_kind(spec, self.field)
        return In(self.field, tuple(bind_value(kind, self.field, v) for v in self.values))

    def truth(self, column: ColumnFn, n: int) -> Truth:
        col = column(self.field)
        present = col.present()
        if col.kind == "keyword":
            keys = col.keys or []
            wanted_set = set(self.values)
            wanted = [i for i in (bisect.bisect_left(keys, v) for v in wanted_set)
                      if i < len(keys) and keys[i] in wanted_set]
            return _known(np.isin(col.values, np.array(wanted, dtype=np.int32)), present)
        values = [_column_value(v) for v in self.values if not (isinstance(v, float) and math.isnan(v))]
        as_float = col.kind == "float" or any(isinstance(v, float) for v in values)
        wanted_arr = np.array(values, dtype=np.float64 if as_float else np.int64)
        return _known(np.isin(col.values, wanted_arr), present)

    def text(self, prec: int = 0) -> str:
        return f"{self.field} IN ({', '.join(_literal(v) for v in self.values)})"


@dataclass(frozen=True, eq=False)
class Missing(Expr):
    """``field IS NULL``: the documents without a value for ``field`` (never unknown)."""

    field: str

    def bind(self, spec: Mapping[str, str]) -> Expr:
        _field_kind(spec, self.field)
        return self

    def truth(self, column: ColumnFn, n: int) -> Truth:
        present = column(self.field).present()
        return ~present, np.asarray(present, dtype=bool)

    def text(self, prec: int = 0) -> str:
        return f"{self.field} IS NULL"


def _flat(kind: type, items: tuple[Expr, ...]) -> tuple[Expr, ...]:
    """``items`` with nested nodes of the same ``kind`` spliced in: (a & b) & c is a & b & c."""
    if not any(isinstance(e, kind) for e in items):
        return items
    out: list[Expr] = []
    for e in items:
        out.extend(e.items if isinstance(e, kind) else (e,))  # type: ignore[attr-defined]
    return tuple(out)


@dataclass(frozen=True, eq=False)
class And(Expr):
    items: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _flat(And, tuple(self.items)))
        object.__setattr__(self, "depth", _nested(self.items))

    def bind(self, spec: Mapping[str, str]) -> Expr:
        return And(tuple(e.bind(spec) for e in self.items))

    def truth(self, column: ColumnFn, n: int) -> Truth:
        true, false = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        for e in self.items:
            t, f = e.truth(column, n)
            true &= t
            false |= f
        return true, false

    def text(self, prec: int = 0) -> str:
        body = " AND ".join(e.text(2) for e in self.items)
        return f"({body})" if prec > 2 else body


@dataclass(frozen=True, eq=False)
class Or(Expr):
    items: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _flat(Or, tuple(self.items)))
        object.__setattr__(self, "depth", _nested(self.items))

    def bind(self, spec: Mapping[str, str]) -> Expr:
        return Or(tuple(e.bind(spec) for e in self.items))

    def truth(self, column: ColumnFn, n: int) -> Truth:
        true, false = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        for e in self.items:
            t, f = e.truth(column, n)
            true |= t
            false &= f
        return true, false

    def text(self, prec: int = 0) -> str:
        body = " OR ".join(e.text(1) for e in self.items)
        return f"({body})" if prec > 1 else body


@dataclass(frozen=True, eq=False)
class Not(Expr):
    item: Expr

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", _nested((self.item,)))

    def __invert__(self) -> Expr:
        return self.item  # NOT NOT x is x (unknown stays unknown)

    def bind(self, spec: Mapping[str, str]) -> Expr:
        return Not(self.item.bind(spec))

    def truth(self, column: ColumnFn, n: int) -> Truth:
        true, false = self.item.truth(column, n)
        return false, true

    def text(self, prec: int = 0) -> str:
        return f"NOT {self.item.text(3)}"


class F:
    """A filter field, for building filters in Python: ``F("year") >= 2020``."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name

    def _cmp(self, op: str, value: Any) -> Expr:
        return Compare(self.name, op, value)

    def __eq__(self, value: Any) -> Expr:  # type: ignore[override]
        return self._cmp("=", value)

    def __ne__(self, value: Any) -> Expr:  # type: ignore[override]
        return self._cmp("!=", value)

    def __lt__(self, value: Any) -> Expr:
        return self._cmp("<", value)

    def __le__(self, value: Any) -> Expr:
        return self._cmp("<=", value)

    def __gt__(self, value: Any) -> Expr:
        return self._cmp(">", value)

    def __ge__(self, value: Any) -> Expr:
        return self._cmp(">=", value)

    def isin(self, values: Iterable[Any]) -> Expr:
        if isinstance(values, str):
            raise CascadeError(f"isin() takes a list of values, not the string {values!r}")
        return In(self.name, tuple(values))

    def missing(self) -> Expr:
        """``field IS NULL``: documents without a value (``~F(f).missing()`` for those with one)."""
        return Missing(self.name)
