"""Filter column values: the declared field kinds, how a metadata value is stored, and a
segment's column as filters read it (:class:`Column`). The index writes the columns
(:class:`cascade.index.columns.ColumnWriter`).

Declared with ``Index.build(..., filter_fields={"year": "int", "lang": "keyword"})``; each
document's value comes from ``doc.meta[field]`` (absent or None: missing). Stored per
segment, row-aligned with the segment's doc numbers::

    col-<field>.npy          int:     int64, INT_MISSING for missing
                             float:   float64, NaN for missing
                             date:    int64 days since 1970-01-01, INT_MISSING for missing
                             keyword: int32 codes into the sorted keys, -1 for missing
    col-<field>.keys.json    keyword only: the sorted distinct values (code = position)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from cascade.core.errors import CascadeError

KINDS = ("int", "float", "date", "keyword")
INT_MISSING = np.iinfo(np.int64).min
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_EPOCH = dt.date(1970, 1, 1)


def check_filter_fields(spec: Mapping[str, str] | None) -> dict[str, str]:
    """Validate ``{field: kind}``; returns a plain dict."""
    out: dict[str, str] = {}
    for name, kind in (spec or {}).items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise CascadeError(f"filter field name {name!r} must be a letter or _ followed by letters, digits or _")
        if name in ("AND", "OR", "NOT", "IN"):
            raise CascadeError(f"filter field name {name!r} is a reserved word")
        if kind not in KINDS:
            raise CascadeError(f"filter field {name!r}: unknown type {kind!r}; choose from {', '.join(KINDS)}")
        out[name] = kind
    return out


def parse_date(value: Any) -> int:
    """Days since 1970-01-01 of a date, a datetime, or an ISO string (its time part ignored)."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return (value - _EPOCH).days
    if isinstance(value, str):
        text = value.strip()
        try:
            return (dt.date.fromisoformat(text[:10]) - _EPOCH).days if len(text) >= 10 else _bad_date(value)
        except ValueError:
            pass
    return _bad_date(value)


def _bad_date(value: Any) -> int:
    raise CascadeError(f"{value!r} is not a date (expected YYYY-MM-DD)")


def coerce(kind: str, value: Any) -> Any:
    """A metadata value as stored in a column of ``kind``; raises CascadeError when it does not fit."""
    if kind == "keyword":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int):
            return str(value)
        raise CascadeError(f"expected a string, got {type(value).__name__} {value!r}")
    if kind == "date":
        return parse_date(value)
    if isinstance(value, bool):
        raise CascadeError(f"expected a number, got {value!r}")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise CascadeError(f"expected an integer, got {value!r}") from None
        if not isinstance(value, int) or not -(2**63) < value < 2**63:
            raise CascadeError(f"expected a 64-bit integer, got {value!r}")
        return value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CascadeError(f"expected a number, got {value!r}") from None
    if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        raise CascadeError(f"expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Column:
    """One segment's column: values by local doc number, and for keywords the sorted keys."""

    kind: str
    values: np.ndarray
    keys: list[str] | None = None

    def present(self) -> np.ndarray:
        if self.kind == "keyword":
            return self.values >= 0
        if self.kind == "float":
            return ~np.isnan(self.values)
        return self.values != INT_MISSING
