"""Declared stage parameters: name, type, default and help, from which validation, the pipeline
parser's errors, ``str()`` of a stage and ``cascade stages`` all come.

Modelled on ir_measures' ``ParamInfo``: a stage lists its parameters once, as a tuple of
:class:`ParamInfo`, and :func:`check_params` turns whatever a user wrote (in Python or in a
pipeline string) into checked, typed values or one clear :class:`~cascade.core.errors.CascadeError`.

>>> K = ParamInfo("k", int, 1000, "results per query", min=1)
>>> check_params("bm25", (K,), {"k": 100})
{'k': 100}
>>> check_params("bm25", (K,), {"kk": 3})
Traceback (most recent call last):
...
cascade.core.errors.CascadeError: bm25: unknown parameter 'kk'; did you mean 'k'?; known: k
>>> check_params("bm25", (K,), {"k": "abc"})
Traceback (most recent call last):
...
cascade.core.errors.CascadeError: bm25: k must be an integer (got 'abc')
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from cascade.core.errors import CascadeError

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a stage.

    ``type`` is int, float, bool or str; ``default`` None with ``optional=True`` means "not
    set"; ``choices`` restricts the values; ``min`` / ``max`` bound numbers (inclusive).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    optional: bool = False

    def check(self, stage: str, value: Any) -> Any:
        """``value`` converted to this parameter's type, or a CascadeError naming the stage."""
        if value is None and (self.optional or self.default is None):
            return None
        value = self._convert(stage, value)
        if self.choices is not None and value not in self.choices:
            raise CascadeError(f"{stage}: {self.name} must be one of {', '.join(map(_show, self.choices))} "
                               f"(got {value!r})")
        if self.min is not None and value < self.min:
            raise CascadeError(f"{stage}: {self.name} must be at least {self.min:g} (got {value!r})")
        if self.max is not None and value > self.max:
            raise CascadeError(f"{stage}: {self.name} must be at most {self.max:g} (got {value!r})")
        return value

    def _convert(self, stage: str, value: Any) -> Any:
        wanted = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.type is bool:
            if isinstance(value, bool):
                return value
        elif self.type is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif self.type is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif self.type is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            if self.choices is None and value is not None and not isinstance(value, bool):
                return value  # e.g. a filter expression object where a filter string is expected
        elif isinstance(value, self.type):
            return value
        raise CascadeError(f"{stage}: {self.name} must be {wanted} (got {value!r})")

    def describe(self) -> str:
        """The parameter's name, type, default and help, as the pipeline grammar writes values."""
        default = "unset" if self.default is None else _show(self.default)
        kind = f"one of {', '.join(map(_show, self.choices))}" if self.choices else \
            _TYPE_NAMES.get(self.type, "a value")
        return f"{self.name} ({kind}, default {default}): {self.help}"


def _show(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def check_params(stage: str, declared: Iterable[ParamInfo], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's checked value (defaults filled in) for the ``given`` ones.

    An unknown name raises a CascadeError with the closest declared name, if any."""
    spec = {p.name: p for p in declared}
    for name in given:
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(spec) or "none"
            raise CascadeError(f"{stage}: unknown parameter {name!r}{hint}; known: {known}")
    return {name: p.check(stage, given[name]) if name in given else p.default for name, p in spec.items()}


def non_defaults(declared: Iterable[ParamInfo], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that differ from their declared defaults (what a stage prints)."""
    return {p.name: values[p.name] for p in declared if p.name in values and values[p.name] != p.default}
